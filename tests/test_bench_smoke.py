"""``python -m bench --smoke``: every benchmark line still runs and judges what it measures.

A few repeats of each line, on this (loaded) machine: no figure holds and none is asserted here (the
figures are ``make bench``'s, on a quiet machine).  What is asserted: the run finishes, writes its JSON
with the commit, the machine and the raw samples, has no ERROR line (a frame that does not do what its
name says, an event decoded wrong, a console that never attaches, a flood that never ran), and has each
line the issue asks for; a line over budget is printed as a FAILURE with its figure.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import core

REPO = Path(__file__).resolve().parents[1]
BENCHES = "prog,events,startup,memory,drop"
EXPECTED = {
    ("prog", "ipv4 udp (blocked, exact, overflowed EXACT4 bucket): vs floor"),
    ("prog", "ipv4 udp (blocked by a prefix): vs xdp-filter"),
    ("prog", "ipv6 udp (blocked by a prefix): vs floor"),
    ("prog", "near miss: ipv4 syn from a /24 with exact rules: vs xdp-filter"),
    ("prog", "near miss: icmp to a rule's address: vs floor"),
    ("prog", "ipv4 udp to a drop rule's port (multi-field): vs xdp-filter"),
    ("prog", "rotating-source syn: vs floor"),
    ("prog", "rotating-source syn: vs xdp-filter"),
    ("events", "events per CPU-second, 65,536 rotating sources"),
    ("events", "events per CPU-second, one source"),
    ("startup", "headless, 10,000 rules: spawn to ready"),
    ("startup", "console, 10,000 rules: spawn to attached, panes live"),
    ("memory", "RSS after attach, 10,000 rules"),
    ("memory", "false single-source alerts in the spoofed flood"),
    ("drop", "ironpost XDP native: CPU per packet"),
}


@pytest.mark.root
def test_bench_smoke_runs_every_line(tmp_path: Path) -> None:
    out = tmp_path / "latest.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--only", BENCHES, "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    assert proc.returncode in (0, 1), proc.stdout[-4000:] + proc.stderr[-4000:]  # 1: a budget not met
    doc = json.loads(out.read_text())
    errors = [ln for ln in doc["lines"] if ln["status"] == "ERROR"]
    assert not errors, [(ln["bench"], ln["note"]) for ln in errors]
    names = {(ln["bench"], ln["name"]) for ln in doc["lines"]}
    assert EXPECTED <= names, sorted(EXPECTED - names)
    assert doc["options"]["smoke"] is True
    assert len(doc["commit"]["sha"]) == 40 and doc["machine"]["cpu_model"] and doc["machine"]["cores"] >= 1
    # Which CPU exactly (a model name alone does not say its generation), and how much the host took.
    assert doc["machine"]["cpu_family"] and doc["machine"]["cpu_model_number"] and doc["machine"]["caches"]
    assert set(doc["figures"]["steal_pct"]) == set(BENCHES.split(","))
    assert all(p is None or 0 <= p <= 100 for p in doc["figures"]["steal_pct"].values())
    assert doc["figures"]["prog"]["samples_ns"], "no raw sample kept"
    assert doc["figures"]["prog"]["rules"]["total"] == 10_000
    # Over budget is said where it cannot be missed; within budget is not.
    for ln in doc["lines"]:
        if ln["status"] == "FAIL":
            assert f"FAILURE: FAIL  {ln['bench']}  {ln['name']}" in proc.stdout
    assert ("FAILURE" in proc.stdout) == bool(doc["failed"])
    assert core.inconsistencies(doc) == []  # every status, ratio and the failed list as the figures give them


def test_bench_table_is_generated_from_the_json(tmp_path: Path) -> None:
    """scripts/bench_table.py puts the JSON's lines between the README's markers, and --check sees a hand edit."""
    sys.path.insert(0, str(REPO / "scripts"))
    import bench_table

    doc = {"started": "2026-12-04T12:00:00+0000", "commit": {"sha": "a" * 40, "dirty": False},
           "machine": {"cpu_model": "CPU", "cores": 2, "kernel": "6.x", "python": "3.11"}, "options": {},
           "failed": ["prog: x"], "order_seed": 7, "figures": {"steal_pct": {"prog": 1.5, "events": 0.0}},
           "lines": [{"bench": "prog", "name": "x", "value": 3.0, "unit": "ns", "status": "FAIL",
                      "beside": "floor 1 ns", "ratio": 3.0, "budget": "<= 2.5x floor", "note": ""}]}  # fmt: skip
    js = tmp_path / "latest.json"
    js.write_text(json.dumps(doc))
    readme = tmp_path / "README.md"
    readme.write_text(f"# t\n\n{bench_table.BEGIN}\nold, hand-written\n{bench_table.END}\nafter\n")
    assert bench_table.main(["--json", str(js), "--readme", str(readme), "--check"]) == 1
    assert bench_table.main(["--json", str(js), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "hand-written" not in text and "| FAIL | prog | x | 3.00 ns | floor 1 ns | 3.00x | <= 2.5x floor |" in text
    assert "commit `aaaaaaaaaaaa`" in text and "1 line(s) failed" in text and text.endswith("after\n")
    assert "CPU time the host stole (others' VMs ran) during each benchmark: prog 1.5 %, events 0 %." in text
    assert bench_table.main(["--json", str(js), "--readme", str(readme), "--check"]) == 0
    # The README of the repository carries the markers, and its table is the committed JSON's.
    assert bench_table.main(["--check"]) == 0
    # A JSON edited by hand, with its table made from it: a status, a figure, a ratio, the failed list.
    line = doc["lines"][0]  # type: ignore[index]
    for edit, says in (({"status": "PASS"}, "PASS but 3 <= 2.5x is False"),
                       ({"value": 1.0}, "ratio 3 puts 0.3333 beside 1, not 1"),
                       ({"ratio": 2.0, "value": 2.0, "status": "PASS"}, "failed lists 1 line(s) but 0"),
                       ({"budget": "<= 5% of a core", "unit": "% core", "ratio": None, "value": 4.0},
                        "FAIL but 4 <= 5% is True")):  # fmt: skip
        js.write_text(json.dumps({**doc, "lines": [{**line, **edit}]}))
        assert bench_table.main(["--json", str(js), "--readme", str(readme)]) == 1
        assert bench_table.main(["--json", str(js), "--readme", str(readme), "--check"]) == 1
        assert any(says in w for w in core.inconsistencies(json.loads(js.read_text()))), says


def test_a_run_whose_code_changed_under_it_says_so_and_gets_no_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Session 26's first full run went on while files were edited: a console start imported a half-written
    module.  The run compares the tree's digest at each write with the one it started with; a change is said in
    the table's head and makes the JSON one bench-table refuses.  The control: an unchanged tree says nothing."""
    trees = iter(["a", "a", "b"])
    monkeypatch.setattr(core, "commit", lambda: {"sha": "f" * 40, "dirty": True, "tree": next(trees)})
    report = core.Report(core.Options())
    out = tmp_path / "latest.json"
    report.write(out)  # the tree as it started
    doc = json.loads(out.read_text())
    assert "changed_during_run" not in doc["commit"] and core.inconsistencies(doc) == []
    report.write(out)  # edited since
    doc = json.loads(out.read_text())
    assert doc["commit"]["changed_during_run"] is True
    assert core.inconsistencies(doc) == ["the code changed during the run: its lines measured different code"]
    assert "(the code changed during the run)" in core.markdown_from_json(doc)


def test_the_start_lines_say_how_many_rounds_their_budget_held_in() -> None:
    """A start line is judged on medians; its note says each round against the floor of its own round, so that a
    median that passes with rounds over the budget does not read as a margin.  Session 31's committed run, as its
    JSON holds the rounds: the console's median 2.28x, and three of nine rounds over 2.5x."""
    from bench.b_startup import rounds_note

    floors = [0.40, 0.42, 0.35, 0.36, 0.47, 0.37, 0.40, 0.44, 0.36]
    console = [1.07, 0.82, 0.83, 0.83, 0.91, 1.14, 0.90, 0.98, 0.94]
    assert rounds_note(console, floors) == "rounds 0.82-1.14 s, 1.9-3.1x their round's floor; 6 of 9 within 2.5x"
    # The controls: every round within, and none; a round is paired with its own floor (the second case sorted
    # would pair 0.9 with 0.3 and 1.2 with 0.4: none within).
    assert rounds_note([0.5, 0.6], [0.4, 0.3]).endswith("2 of 2 within 2.5x")
    assert rounds_note([1.2, 0.9], [0.3, 0.4]).endswith("1 of 2 within 2.5x")
    assert rounds_note([0.9, 1.3], [0.3, 0.4]).endswith("0 of 2 within 2.5x")
    with pytest.raises(ValueError):
        rounds_note([1.0], [0.4, 0.5])  # a round without its floor is a broken run, not a shorter note
