"""`ironpost-tui check-config` on a corpus of bad files: the exact messages, exit status 2.

Each ``config_corpus/bad/NAME.toml`` has its full expected stderr in
``NAME.expected``; the command runs in that directory with the bare file
name, so the messages start with ``NAME.toml:``.  The two large cases
(10,001 rules, 11 MB) are generated here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CORPUS = Path(__file__).resolve().parent / "config_corpus"
BAD = sorted((CORPUS / "bad").glob("*.toml"))
REPO = CORPUS.parent.parent


def check_config(path: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ironpost_tui", "check-config", path],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_corpus_covers_the_cases() -> None:
    names = {p.stem for p in BAD}
    assert {
        "syntax-error",
        "wrong-type",
        "port-too-large",
        "port-negative",
        "port-string",
        "bad-address",
        "bad-prefix",
        "unknown-action",
        "unknown-key",
        "duplicate-id",
        "empty-rule",
        "nested-tables",
        "nested-arrays",
        "many-errors",
    } <= names
    for p in BAD:
        assert p.with_suffix(".expected").is_file(), f"{p.name} has no .expected file"


@pytest.mark.parametrize("bad", BAD, ids=[p.stem for p in BAD])
def test_bad_file_exact_message(bad: Path) -> None:
    out = check_config(bad.name, bad.parent)
    expected = bad.with_suffix(".expected").read_text()
    assert out.stderr == expected
    assert out.stdout == ""
    assert out.returncode == 2


def test_several_errors_are_all_reported() -> None:
    lines = (CORPUS / "bad" / "many-errors.expected").read_text().splitlines()
    assert len(lines) == 19
    assert all(line.startswith("many-errors.toml:") for line in lines)


def test_seed_file_is_ok() -> None:
    out = check_config("ironpost.toml", CORPUS)
    assert (out.returncode, out.stdout, out.stderr) == (0, "ironpost.toml: OK (0 rules)\n", "")


def test_the_seed_documents_example_is_ok() -> None:
    """The TOML example of the seed document, copied verbatim: ring_buffer_size = 256 is KiB."""
    out = check_config("seed-example.toml", CORPUS)
    assert (out.returncode, out.stdout, out.stderr) == (0, "seed-example.toml: OK (2 rules)\n", "")


def test_good_file_counts_its_rules(tmp_path: Path) -> None:
    (tmp_path / "rules.toml").write_text(
        '[[rules]]\nid = "a"\nsrc_ip = "198.51.100.7"\naction = "block"\n\n'
        '[[rules]]\nid = "b"\ndst_port = 53\nprotocol = 17\naction = "monitor"\n'
    )
    out = check_config("rules.toml", tmp_path)
    assert (out.returncode, out.stdout, out.stderr) == (0, "rules.toml: OK (2 rules)\n", "")


def _rules(n: int) -> str:
    return "".join(
        f'[[ebpf.rules]]\nid = "r{i}"\nsrc_ip = "10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"\naction = "drop"\n\n'
        for i in range(n)
    )


def test_a_file_over_the_maps_capacity_only_is_exit_8_as_a_start_is(tmp_path: Path) -> None:
    (tmp_path / "full.toml").write_text("[ebpf]\nblocklist_max_entries = 1\n\n" + _rules(2))
    out = check_config("full.toml", tmp_path)
    assert out.returncode == 8, out.stderr
    assert "capacity" in out.stderr or "BLOCKLIST" in out.stderr, out.stderr
    # Control: an error of the file besides makes it a bad file, exit 2.
    (tmp_path / "full.toml").write_text("[ebpf]\nblocklist_max_entries = 1\nxdp_mode = 'nope'\n\n" + _rules(2))
    assert check_config("full.toml", tmp_path).returncode == 2


def test_10001_rules_refused(tmp_path: Path) -> None:
    (tmp_path / "many.toml").write_text(_rules(10_001))
    out = check_config("many.toml", tmp_path)
    # each rule is 5 lines: rule #10001 starts on line 5 * 10000 + 1
    assert out.stderr == (
        "many.toml:50001:1: too many rules: the file has 10001, at most 10000 are allowed "
        "(this is rule #10001): cover many addresses with one prefix\n"
    )
    assert out.returncode == 2


def test_10000_rules_accepted(tmp_path: Path) -> None:
    (tmp_path / "full.toml").write_text(_rules(10_000))
    out = check_config("full.toml", tmp_path)
    assert (out.returncode, out.stdout, out.stderr) == (0, "full.toml: OK (10000 rules)\n", "")


def test_11_mb_file_refused_before_parsing(tmp_path: Path) -> None:
    # Valid TOML, padded in comments, with a rule that would be an error if it
    # were ever looked at: the size must be the only complaint.
    head = '[[ebpf.rules]]\nid = "web"\ndst_port = 65536\naction = "drop"\n'
    line = "# " + "x" * 97 + "\n"
    size = 11 * 1024 * 1024
    text = head + line * ((size - len(head)) // len(line))
    text += "#" * (size - len(text) - 1) + "\n"
    (tmp_path / "big.toml").write_text(text)
    assert (tmp_path / "big.toml").stat().st_size == size
    out = check_config("big.toml", tmp_path)
    assert out.stderr == (
        "big.toml:1:1: the file is 11534336 bytes, more than the limit of 10485760 bytes (10 MiB): "
        "check that it is the right file\n"
    )
    assert out.returncode == 2


def test_missing_file(tmp_path: Path) -> None:
    out = check_config("nope.toml", tmp_path)
    assert out.stderr == "nope.toml:1:1: cannot read the file: No such file or directory\n"
    assert out.returncode == 2


def test_check_config_imports_neither_bcc_nor_the_ui() -> None:
    code = (
        "import sys\n"
        "from ironpost_tui import cli\n"
        f"rc = cli.main(['check-config', {str(CORPUS / 'ironpost.toml')!r}])\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('bcc', 'textual', 'rich', 'plotext'))\n"
        "print('RC', rc, 'BAD', ','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.splitlines()[-1] == "RC 0 BAD "
