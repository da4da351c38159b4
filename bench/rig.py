"""Processes, traffic and clocks the benchmarks share.

Everything here cleans up after itself in ``finally`` blocks or context
managers: processes are started in sessions of their own and their whole
group is killed; floods stop with their ``with`` block.  Traffic only flows
inside a netlab lab (tests/support/netlab.py) from addresses in 198.18.0.0/15.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from support import (
    netlab,  # tests/support/netlab.py: bench/__init__.py puts tests/ on sys.path
    trafgen,
)
from support.trafgen import spoofed_syn6_cfg, trafgen_cfg  # noqa: F401  (the benches' floods: rig.trafgen_cfg)

T = TypeVar("T")

PY = sys.executable
_SCRIPT = Path(PY).parent / "ironpost-tui"
IRONPOST: list[str] = [str(_SCRIPT)] if _SCRIPT.exists() else [PY, "-m", "ironpost_tui"]
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
ALLOWED = ipaddress.ip_network("198.18.0.0/15")


class BenchError(RuntimeError):
    pass


# What the agent says when a rule would drop an address of this host: on a shared machine another lab's
# address can appear inside the bench's rule set between building the set and the agent's start.
HOST_ADDRESS_RACE = "(an address of this host)"


def retry_host_address_race(fn: Callable[[], T], attempts: int = 3) -> T:
    """``fn()``, again (it builds its rule set anew) when it failed on that race; any other error at once."""
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as exc:
            if HOST_ADDRESS_RACE not in " ".join(str(exc).split()) or attempt == attempts:
                raise
    raise AssertionError("unreachable")


def need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise BenchError(f"missing tools: {', '.join(missing)} (run `make setup`)")


def sh(*cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise BenchError(f"{' '.join(cmd)}: exit {proc.returncode}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def sh_env(env: dict[str, str], *cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``sh`` with an environment of its own."""
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, env=env)
    if check and proc.returncode != 0:
        raise BenchError(f"{' '.join(cmd)}: exit {proc.returncode}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def possible_cpus() -> int:
    """/sys/devices/system/cpu/possible ("0-3"): a per-CPU map's value holds one slot per possible CPU."""
    n = 0
    for part in Path("/sys/devices/system/cpu/possible").read_text().strip().split(","):
        lo, _, hi = part.partition("-")
        n += int(hi or lo) - int(lo) + 1
    return n


@contextlib.contextmanager
def tmpdir(prefix: str) -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix=f"ironpost-bench-{prefix}-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


# --------------------------------------------------------------------------- #
# clocks: /proc/stat and /proc/PID


@dataclass(frozen=True)
class CpuTimes:
    """Ticks from /proc/stat, all CPUs and each."""

    at: float
    total: tuple[int, ...]  # user nice system idle iowait irq softirq steal
    per_cpu: tuple[tuple[int, ...], ...]

    @staticmethod
    def now() -> CpuTimes:
        total: tuple[int, ...] = ()
        per: list[tuple[int, ...]] = []
        at = time.monotonic()
        for line in Path("/proc/stat").read_text().splitlines():
            if not line.startswith("cpu"):
                break
            f = line.split()
            vals = tuple(int(x) for x in f[1:9])
            if f[0] == "cpu":
                total = vals
            else:
                per.append(vals)
        return CpuTimes(at, total, tuple(per))


@dataclass(frozen=True)
class CpuDelta:
    seconds: float
    system: float  # CPU-seconds, all CPUs
    softirq: float
    irq: float
    user: float
    idle: float

    @staticmethod
    def between(a: CpuTimes, b: CpuTimes) -> CpuDelta:
        d = [y - x for x, y in zip(a.total, b.total, strict=True)]
        return CpuDelta(
            seconds=b.at - a.at,
            user=(d[0] + d[1]) / CLK_TCK,
            system=d[2] / CLK_TCK,
            idle=(d[3] + d[4]) / CLK_TCK,
            irq=d[5] / CLK_TCK,
            softirq=d[6] / CLK_TCK,
        )


def proc_cpu_secs(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise BenchError(f"no VmRSS for {pid}")


def tree_pids(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    out = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            for child in (task / "children").read_text().split():
                out += tree_pids(int(child))
        except OSError:
            pass
    return out


# --------------------------------------------------------------------------- #
# processes with time-stamped output


class TimedProcess:
    """A process in a session of its own; every line of its stdout+stderr stamped with time.monotonic()."""

    def __init__(self, argv: Sequence[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        self.argv = list(argv)
        self.t_spawn = time.monotonic()
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            env=env,
            cwd=cwd,
        )
        self.lines: list[tuple[float, str]] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            now = time.monotonic()
            with self._cond:
                self.lines.append((now, raw.rstrip("\n")))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self, last: int = 30) -> str:
        with self._cond:
            return "\n".join(line for _, line in self.lines[-last:])

    def wait_line(self, text: str, timeout: float, since: float = 0.0) -> tuple[float, str]:
        """(arrival time, line) of the first line containing ``text`` that arrived at or after ``since``."""
        end = time.monotonic() + timeout
        with self._cond:
            while True:
                for at, line in self.lines:
                    if at >= since and text in line:
                        return at, line
                if time.monotonic() > end:
                    raise BenchError(f"no line with {text!r} within {timeout} s from {self.argv[0]}:\n{self.output()}")
                if self.proc.poll() is not None and not self._reader.is_alive():
                    raise BenchError(f"{' '.join(self.argv)} exited ({self.proc.returncode}):\n{self.output()}")
                self._cond.wait(0.05)

    def stop(self, sig: int = signal.SIGTERM, grace: float = 5.0) -> None:
        """Signal the group, then kill -9 what is left."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # stragglers of the group
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        self._reader.join(5)


@contextlib.contextmanager
def started(argv: Sequence[str], env: dict[str, str] | None = None) -> Iterator[TimedProcess]:
    p = TimedProcess(argv, env=env)
    try:
        yield p
    finally:
        p.stop()


# --------------------------------------------------------------------------- #
# the agent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def agent_config(rules: Sequence[dict[str, object]] = (), *, event_rate: int | None = None,
                 metrics: bool = True, allowlist: bool = True, port: int | None = None) -> str:  # fmt: skip
    """A TOML configuration for a benchmark agent.  Metrics on ``port`` or a free port (so agents of
    concurrent runs do not fight over 9717); ``allowlist=False``: nothing protected, so a drop rule has no
    exception."""
    port = free_port() if port is None else port
    lines = ["[metrics]", f"enabled = {str(metrics).lower()}", f"port = {port}", ""]
    if not allowlist:
        lines += ["[safety]", "protect_host_addresses = false", "protect_ssh_client = false", ""]
    if event_rate is not None:
        lines += ["[ebpf]", f"event_rate_limit = {event_rate}", ""]
    for rule in rules:
        lines.append("[[ebpf.rules]]")
        for k, v in rule.items():
            lines.append(f"{k} = {json.dumps(v)}")
        lines.append("")
    return "\n".join(lines)


def agent_env() -> dict[str, str]:
    """No SSH or sudo identity: protection comes from the configuration only."""
    return {k: v for k, v in os.environ.items() if k not in ("SSH_CONNECTION", "SSH_CLIENT", "SUDO_USER")}


@contextlib.contextmanager
def agent(iface: str, workdir: Path, config: str, *extra: str) -> Iterator[TimedProcess]:
    """``ironpost-tui IFACE --headless`` with its config, state and audit under ``workdir``; stopped
    (SIGTERM, then kill -9 of its group) and ``ironpost-tui cleanup IFACE`` run at the end."""
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = workdir / "ironpost.toml"
    cfg.write_text(config)
    argv = [*IRONPOST, iface, "--headless", "--config", str(cfg), "--state-dir", str(workdir / "state"),
            "--audit-log", str(workdir / "audit.log"), *extra]  # fmt: skip
    p = TimedProcess(argv, env=agent_env())
    try:
        yield p
    finally:
        p.stop()
        sh(*IRONPOST, "cleanup", iface, check=False)


# --------------------------------------------------------------------------- #
# floods with trafgen


class Flood:
    """trafgen in the lab's namespace, one process pinned to ``cpu``, until stop()."""

    def __init__(self, lab: netlab.Lab, cfg_text: str, workdir: Path, rate_pps: int | None = None,
                 cpu: int = 0) -> None:  # fmt: skip
        cfg = workdir / f"trafgen-{time.monotonic_ns()}.cfg"
        cfg.write_text(f"cpu({cpu}): {cfg_text}")
        self.lab = lab
        self.proc = TimedProcess(trafgen.argv(lab, cfg, rate_pps))

    def check_running(self) -> None:
        if self.proc.proc.poll() is not None:
            raise BenchError(f"trafgen exited ({self.proc.proc.returncode}):\n{self.proc.output()}")

    def stop(self) -> None:
        self.proc.stop(signal.SIGINT, grace=5)


@contextlib.contextmanager
def flood(lab: netlab.Lab, cfg_text: str, workdir: Path, rate_pps: int | None = None,
          cpu: int = 0, settle: float = 0.5) -> Iterator[Flood]:  # fmt: skip
    f = Flood(lab, cfg_text, workdir, rate_pps, cpu)
    try:
        time.sleep(settle)
        f.check_running()
        yield f
    finally:
        f.stop()


def peer_tx(lab: netlab.Lab) -> tuple[int, int]:
    """(tx packets, tx dropped) of the lab's namespace side."""
    out = json.loads(sh("ip", "-n", lab.ns, "-s", "-j", "link", "show", "dev", lab.peer_if).stdout)
    tx = out[0]["stats64"]["tx"]
    return int(tx["packets"]), int(tx["dropped"])


def random_phase(period: float = 0.5) -> None:
    time.sleep(random.uniform(0.0, period))


def lab() -> Any:
    """A netns + veth pair (tests/support/netlab.py), removed at the end of the ``with`` block."""
    return netlab.veth_pair()
