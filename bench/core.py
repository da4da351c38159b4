"""What every benchmark shares: the report (lines, figures, JSON), the machine, options."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import random
import re
import statistics
import subprocess
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"


PASS, FAIL, INFO, SKIP, ERROR = "PASS", "FAIL", "info", "SKIP", "ERROR"


@dataclass(frozen=True)
class Options:
    quick: bool = False
    soak_secs: float = 600.0
    only: tuple[str, ...] = ()
    verbose: bool = False
    smoke: bool = False  # a few repeats of every line: is each line still measurable (the test suite's run)
    seed: int = 19  # the rule set's and the round order's seed (recorded in the JSON)
    out: Path = RESULTS / "latest.json"

    def reps(self, full: int, quick: int, smoke: int = 1) -> int:
        """How many of something this run takes: the smoke mode's few, --quick's, or the full count."""
        return smoke if self.smoke else quick if self.quick else full


def shuffled(items: Iterable[T], rng: random.Random) -> list[T]:
    """A round's order (of frames, programs, mechanisms): shuffled, so that no line always runs first
    or after the same neighbour (a warm or cold cache, a frequency step)."""
    out = list(items)
    rng.shuffle(out)
    return out


@dataclass
class Line:
    """One row of the table: a figure, what it is set beside, and its budget."""

    bench: str
    name: str
    value: float | None
    unit: str
    status: str = INFO
    beside: str = ""  # "floor 21 ns", "xdp-filter 100 ns"
    ratio: float | None = None  # value / beside's figure
    budget: str = ""  # "<= 0.6x xdp-filter"
    note: str = ""

    def cells(self) -> list[str]:
        value = "" if self.value is None else f"{fmt(self.value)} {self.unit}".strip()
        ratio = "" if self.ratio is None else f"{self.ratio:.2f}x"
        return [self.status, self.bench, self.name, value, self.beside, ratio, self.budget, self.note]


def fmt(x: float) -> str:
    if x == 0:
        return "0"
    a = abs(x)
    if a >= 1e6:
        return f"{x / 1e6:.2f}M"
    if a >= 1e4:
        return f"{x / 1e3:.0f}k"
    if a >= 100:
        return f"{x:.0f}"
    if a >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}" if a >= 0.1 else f"{x:.3f}"


def median(xs: Iterable[float]) -> float:
    return float(statistics.median(list(xs)))


@dataclass
class Report:
    options: Options
    lines: list[Line] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)  # bench name -> its raw figures
    started: float = field(default_factory=time.time)
    order_seed: int = field(default_factory=lambda: random.SystemRandom().randrange(2**32))
    # The commit measured, taken when the run starts: the run writes its results as it goes, and a check
    # at the end saw the run's own results file as a change to the work tree.
    measured: dict[str, Any] = field(default_factory=lambda: commit())
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.order_seed)  # the rounds' order: shuffled, and the seed kept

    def add(self, line: Line) -> Line:
        self.lines.append(line)
        cells = "  ".join(c for c in line.cells() if c)
        # Over budget, whatever the line: said as a failure with its figure, where no one can miss it.
        print(f"  FAILURE: {cells}" if line.status in (FAIL, ERROR) else f"  {cells}", flush=True)
        return line

    def info(self, bench: str, name: str, value: float | None, unit: str, **kw: Any) -> Line:
        return self.add(Line(bench, name, value, unit, INFO, **kw))

    def budget(
        self,
        bench: str,
        name: str,
        value: float,
        unit: str,
        ok: bool,
        budget: str,
        beside: str = "",
        ratio: float | None = None,
        note: str = "",
    ) -> Line:
        return self.add(Line(bench, name, value, unit, PASS if ok else FAIL, beside, ratio, budget, note))

    def skip(self, bench: str, name: str, why: str) -> Line:
        return self.add(Line(bench, name, None, "", SKIP, note=why))

    def error(self, bench: str, why: str) -> Line:
        return self.add(Line(bench, "error", None, "", ERROR, note=why))

    @property
    def failed(self) -> list[Line]:
        return [ln for ln in self.lines if ln.status in (FAIL, ERROR)]

    def table(self) -> str:
        head = ["status", "bench", "figure", "value", "beside (same run)", "ratio", "budget", "note"]
        rows = [head] + [ln.cells() for ln in self.lines]
        widths = [max(len(r[i]) for r in rows) for i in range(len(head) - 1)]
        out = []
        for n, r in enumerate(rows):
            cells = [c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)] + [r[-1]]
            out.append("  ".join(cells).rstrip())
            if n == 0:
                out.append("  ".join("-" * w for w in widths) + "  ----")
        return "\n".join(out)

    def markdown(self) -> str:
        head = ["", "bench", "figure", "value", "beside (same run)", "ratio", "budget", "note"]
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for ln in self.lines:
            out.append("| " + " | ".join(c.replace("|", "/") for c in ln.cells()) + " |")
        return "\n".join(out)

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        now = commit()
        if (now.get("sha"), now.get("tree")) != (self.measured.get("sha"), self.measured.get("tree")):
            self.measured["changed_during_run"] = True  # said in the table's head; make bench-table refuses it
        doc = {
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.started)),
            "seconds": round(time.time() - self.started, 1),
            "commit": self.measured,
            "order_seed": self.order_seed,
            "machine": machine(),
            "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self.options).items()},
            "ok": not self.failed,
            "failed": [f"{ln.bench}: {ln.name}" for ln in self.failed],
            "lines": [asdict(ln) for ln in self.lines],
            "figures": self.figures,
        }
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=2, default=str) + "\n")
        tmp.replace(path)


def commit() -> dict[str, Any]:
    """The commit measured, and whether the work tree differed from it (then the figures are not its)."""

    def git(*args: str) -> str:
        try:
            out = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return ""
        return out.stdout.strip() if out.returncode == 0 else ""

    # Changes outside bench/results/, untracked files included (a new bench file is code measured): the
    # results a run writes are not the code it measured.
    changed = git("status", "--porcelain", "--untracked-files=all", "--", ".", ":!bench/results")
    # What the tree holds beyond the commit, as one digest: the run compares it at its end (a file edited while
    # the run went on is measured by some lines and not others; session 26's first run met a half-written one).
    diff = git("diff", "HEAD", "--binary", "--", ".", ":!bench/results")
    tree = hashlib.sha256((changed + "\0" + diff).encode()).hexdigest()[:16]
    return {
        "sha": git("rev-parse", "HEAD"),
        "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
        "dirty": bool(changed),
        "tree": tree,
    }


_CPUINFO_KEYS = {"model name": "cpu_model", "cpu family": "cpu_family", "model": "cpu_model_number",
                 "stepping": "cpu_stepping", "microcode": "cpu_microcode"}  # fmt: skip


def _cpu() -> dict[str, Any]:
    """The first CPU's identity as /proc/cpuinfo gives it (a "model name" of "AMD EPYC" alone does not tell
    one generation from another) and its caches' sizes."""
    found: dict[str, Any] = {v: "" for v in _CPUINFO_KEYS.values()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if not line.strip():
                break  # the first CPU's block only
            key, _, value = line.partition(":")
            name = _CPUINFO_KEYS.get(key.strip())
            if name is not None:
                found[name] = value.strip()
    except OSError:
        pass
    caches = {}
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level, kind = (index / "level").read_text().strip(), (index / "type").read_text().strip()
            caches[f"L{level}{'' if kind == 'Unified' else kind[0].lower()}"] = (index / "size").read_text().strip()
        except OSError:
            continue
    found["caches"] = caches
    return found


def cpu_times() -> tuple[int, int]:
    """(steal, total) jiffies of all CPUs since boot (/proc/stat): the time the host gave others while this
    VM wanted to run, beside all of it."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        values = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
    except (OSError, ValueError, IndexError):
        return 0, 0
    return values[7], sum(values)


def steal_pct(before: tuple[int, int], after: tuple[int, int]) -> float | None:
    """The share of the CPUs' time the host stole between two cpu_times(), in %, or None when not known."""
    total = after[1] - before[1]
    return round(100 * (after[0] - before[0]) / total, 2) if total > 0 else None


def machine() -> dict[str, Any]:
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "kernel": platform.release(),
        "kernel_version": platform.version(),
        **_cpu(),
        "nproc": os.cpu_count(),
        "cores": len(os.sched_getaffinity(0)),
        "mem_gib": round(mem_kb / 2**20, 1),
        "python": platform.python_version(),
        "hostname": platform.node(),
    }


def _cpu_id(m: dict[str, Any]) -> str:
    """ " (family F, model M, L3 …)" when the run recorded them (since session 27), else ""."""
    if not m.get("cpu_family"):
        return ""
    l3 = m.get("caches", {}).get("L3")
    return f" (family {m['cpu_family']}, model {m.get('cpu_model_number', '?')}{f', L3 {l3}' if l3 else ''})"


def markdown_from_json(doc: dict[str, Any]) -> str:
    """The README's performance table from a results JSON: where and what was measured, then every line."""
    m, c = doc.get("machine", {}), doc.get("commit", {})
    opts = doc.get("options", {})
    mode = "smoke (no figure holds)" if opts.get("smoke") else "quick" if opts.get("quick") else "full"
    dirty = " (work tree modified)" if c.get("dirty") else ""
    dirty += " (the code changed during the run)" if c.get("changed_during_run") else ""
    failed = [ln for ln in doc.get("lines", []) if ln.get("status") in (FAIL, ERROR)]  # counted from the lines
    head = (f"Run {doc.get('started', '?')}, commit `{str(c.get('sha', '?'))[:12]}`{dirty}, {mode} mode, "
            f"order seed {doc.get('order_seed', '?')}: {m.get('cpu_model', '?')}{_cpu_id(m)}, "
            f"{m.get('cores', '?')} cores, kernel {m.get('kernel', '?')}, python {m.get('python', '?')}. ")  # fmt: skip
    steal = doc.get("figures", {}).get("steal_pct", {})
    if steal:
        parts = ", ".join(f"{name} {pct:g} %" for name, pct in steal.items() if pct is not None)
        head += f"CPU time the host stole (others' VMs ran) during each benchmark: {parts}. "
    head += f"{len(failed)} line(s) failed or in error." if failed else "Every budget met."
    lines = [Line(**{k: v for k, v in ln.items() if k in Line.__dataclass_fields__}) for ln in doc.get("lines", [])]
    r = Report(Options(), measured={})  # a table of stored lines: no commit to take
    r.lines = lines
    return head + "\n\n" + r.markdown()


_BUDGET = re.compile(r"(<=|>=) ?([0-9.]+) ?(x|%|s)(?!\w)")  # "\b" after % never matched: % lines went unread
_BESIDE = re.compile(r"([0-9][0-9,]*(?:\.[0-9]+)?) ?(?:ns|s|MiB|ev/cpu-s|ns/pkt)\b")


def inconsistencies(doc: dict[str, Any]) -> list[str]:
    """What in a results JSON disagrees with itself, one line each: a line whose status is not what its figure
    and its budget say (a budget that starts "<= N x|%|s" or ">= N..."; the others are not read), a ratio that is
    not its figure over the figure beside it (as far as the beside's digits show it), or a ``failed`` list that
    is not the lines that failed.  ``make bench-table`` writes no table from such a JSON, and ``--check`` fails."""
    out = []
    lines = doc.get("lines", [])
    for ln in lines:
        name = f"{ln.get('bench')}: {ln.get('name')}"
        status, value, ratio = ln.get("status"), ln.get("value"), ln.get("ratio")
        m = _BUDGET.match(ln.get("budget") or "")
        if m is not None and status in (PASS, FAIL) and value is not None:
            op, limit, unit = m.group(1), float(m.group(2)), m.group(3)
            figure = ratio if unit == "x" else value
            if figure is None:
                out.append(f"{name}: a budget of {ln.get('budget')!r} with no ratio")
            else:
                ok = figure <= limit if op == "<=" else figure >= limit
                if ok != (status == PASS):
                    out.append(f"{name}: {status} but {figure:.4g} {op} {limit:g}{unit} is {ok}")
        b = _BESIDE.search(ln.get("beside") or "")
        if b is not None and ratio and value is not None:
            # The figure the ratio was taken against, rounded as the beside shows it, is the beside's figure.
            text = b.group(1).replace(",", "")
            half = 0.5 * 10 ** -len(text.partition(".")[2])
            if abs(value / ratio - float(text)) > half * 1.001:
                out.append(f"{name}: ratio {ratio:.4g} puts {value / ratio:.4g} beside {value:.4g}, not {text}")
    if doc.get("commit", {}).get("changed_during_run"):
        out.append("the code changed during the run: its lines measured different code")
    said = list(doc.get("failed", []))
    failed = [f"{ln.get('bench')}: {ln.get('name')}" for ln in lines if ln.get("status") in (FAIL, ERROR)]
    if sorted(said) != sorted(failed):
        out.append(f"failed lists {len(said)} line(s) but {len(failed)} line(s) failed or are in error")
    return out
