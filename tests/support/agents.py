"""Run ``ironpost-tui`` as a subprocess, the way an operator does, and look at
what it left on an interface.

    pool = AgentPool()
    agent = pool.start(lab.host_if, "--persist")
    line = agent.wait_ready()
    ...
    pool.close()   # kill -9 what still runs, then `ironpost-tui cleanup IFACE`

Every agent runs in its own session (``start_new_session=True``), so a signal
for the test run never reaches it, and the pool can kill its whole group.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from ironpost_tui.engine.engine import Engine, EngineOptions
from ironpost_tui.kernel import libbpf

from . import bpftool, netlab

_SCRIPT = Path(sys.executable).parent / "ironpost-tui"
IRONPOST: list[str] = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "ironpost_tui"]
PIN_ROOT = Path("/sys/fs/bpf/ironpost")
METRICS_OPTIONS = ("--metrics-port", "--metrics-addr", "--no-metrics", "--web-config")
READY_TIMEOUT = 90.0  # BCC compiles at start-up: ~1 s alone, much more on a busy 2-core machine

_READY = re.compile(r"ready: .* \((?P<mode>\w+) mode, prog id (?P<prog_id>\d+)\)")


class Agent:
    """One ``ironpost-tui`` process; its stdout and stderr are collected line by line."""

    def __init__(self, argv: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.argv = list(argv)
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            env=env,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._cond = threading.Condition()
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for t in self._readers:
            t.start()

    def _read(self, stream: object, into: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            with self._cond:
                into.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def stdout(self) -> str:
        with self._cond:
            return "\n".join(self.out)

    @property
    def stderr(self) -> str:
        with self._cond:
            return "\n".join(self.err)

    def describe(self) -> str:
        return (
            f"{' '.join(self.argv)}\n  exit: {self.proc.poll()}\n  stdout:\n    "
            + "\n    ".join(self.out)
            + "\n  stderr:\n    "
            + "\n    ".join(self.err)
        )

    def wait_for(self, text: str, timeout: float = 5.0) -> str:
        """The first stdout line containing ``text``; AssertionError if it does not come in time."""
        end = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.out:
                    if text in line:
                        return line
                left = end - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not any(t.is_alive() for t in self._readers)):
                    raise AssertionError(f"no line with {text!r} on stdout within {timeout} s:\n{self.describe()}")
                self._cond.wait(min(left, 0.1))

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> str:
        return self.wait_for("ready:", timeout)

    def send(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    def wait(self, timeout: float = 15.0) -> int:
        """The exit status (after the output is read to its end)."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running after {timeout} s:\n{self.describe()}") from None
        for t in self._readers:
            t.join(5)
        return rc

    def kill(self) -> None:
        """kill -9 the process group, if anything of it still runs."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        for t in self._readers:
            t.join(5)


def agent_env(**extra: str) -> dict[str, str]:
    """The test's environment without any SSH or sudo identity (protection comes from the config only),
    plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in ("SSH_CONNECTION", "SSH_CLIENT", "SUDO_USER")}
    env.update(extra)
    return env


def ready_info(line: str) -> tuple[str, int]:
    """(mode, prog id) from a ``ready:`` line."""
    m = _READY.search(line)
    assert m, f"not a ready line: {line!r}"
    return m["mode"], int(m["prog_id"])


def run(
    *args: str, prefix: Sequence[str] = (), timeout: float = 120.0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``[prefix...] ironpost-tui ARGS`` to its end."""
    return subprocess.run(
        [*prefix, *IRONPOST, *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, env=env
    )


def cleanup(iface: str, prefix: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
    return run("cleanup", iface, prefix=prefix)


class AgentPool:
    """Agents started by one test; ``close`` kills them and cleans their interfaces."""

    def __init__(self, pick_metrics_port: bool = True) -> None:
        self.agents: list[Agent] = []
        self._ifaces: dict[tuple[str, tuple[str, ...]], None] = {}
        self.pick_metrics_port = pick_metrics_port

    def _metrics_args(self, args: Sequence[str]) -> list[str]:
        """A free metrics port unless the test chose one: agents of two test runs at once must not both want 9717."""
        if not self.pick_metrics_port or any(a.split("=", 1)[0] in METRICS_OPTIONS for a in args):
            return []
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return ["--metrics-port", str(s.getsockname()[1])]

    def start(self, iface: str, *args: str, prefix: Sequence[str] = (), headless: bool = True,
              env: dict[str, str] | None = None) -> Agent:  # fmt: skip
        """``[prefix...] ironpost-tui IFACE --headless ARGS``."""
        self.track(iface, prefix)
        argv = [*prefix, *IRONPOST, iface, *(["--headless"] if headless else []), *args, *self._metrics_args(args)]
        agent = Agent(argv, env=env)
        self.agents.append(agent)
        return agent

    def run(self, iface: str, *args: str, prefix: Sequence[str] = (),
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
        """``[prefix...] ironpost-tui IFACE --headless ARGS`` to its end (it is expected to fail)."""
        self.track(iface, prefix)
        return run(iface, "--headless", *args, *self._metrics_args(args), prefix=prefix, env=env)

    def track(self, iface: str, prefix: Sequence[str] = ()) -> None:
        """Clean ``iface`` (seen through ``prefix``, e.g. ``ip netns exec NS``) at the end."""
        self._ifaces[(iface, tuple(prefix))] = None

    def close(self) -> list[str]:
        """Kill every agent, then clean every interface used; returns what went wrong."""
        problems = []
        for agent in self.agents:
            try:
                agent.kill()
            except Exception as exc:  # keep cleaning
                problems.append(f"killing {agent.pid}: {exc!r}")
        for iface, prefix in self._ifaces:
            proc = cleanup(iface, prefix)
            if proc.returncode != 0:
                problems.append(f"cleanup {iface}: exit {proc.returncode}: {proc.stderr.strip()}")
        return problems


# --------------------------------------------------------------------------- #
# what is on an interface


def xdp_progs(ifindex: int, ns: str | None = None) -> list[tuple[str, int]]:
    """[(mode, prog id)] attached to ``ifindex`` (in namespace ``ns`` if given)."""
    if ns is None:
        return libbpf.xdp_query(ifindex).prog_ids
    with netlab.in_netns(ns):  # the netlink socket is made in the thread's namespace
        return libbpf.xdp_query(ifindex).prog_ids


def wait_no_xdp(ifindex: int, within: float = 1.0, since: float | None = None, ns: str | None = None) -> float:
    """Poll until nothing is attached to ``ifindex``; seconds it took (from ``since``), or AssertionError."""
    t0 = time.monotonic() if since is None else since
    while True:
        progs = xdp_progs(ifindex, ns)
        elapsed = time.monotonic() - t0
        if not progs:
            return elapsed
        if elapsed > within:
            raise AssertionError(f"still attached to ifindex {ifindex} {elapsed:.2f} s later: {progs}")
        time.sleep(0.01)


def prog_exists(prog_id: int) -> bool:
    try:
        fd = libbpf.prog_fd_by_id(prog_id)
    except libbpf.BpfCallError:
        return False
    os.close(fd)
    return True


def wait_prog_gone(prog_id: int, within: float = 1.0) -> None:
    end = time.monotonic() + within
    while prog_exists(prog_id):
        if time.monotonic() > end:
            raise AssertionError(f"prog id {prog_id} still loaded {within} s later")
        time.sleep(0.01)


def pinned_link(iface: str) -> libbpf.LinkInfo:
    fd = libbpf.obj_get(str(PIN_ROOT / iface / "link"))
    try:
        return libbpf.link_info(fd)
    finally:
        os.close(fd)


def pinned_map(iface: str, name: str) -> libbpf.MapInfo:
    fd = libbpf.obj_get(str(PIN_ROOT / iface / name))
    try:
        return libbpf.map_info(fd)
    finally:
        os.close(fd)


def pinned_map_dump(iface: str, name: str) -> str:
    """The raw ``bpftool -j map dump`` output of the map ``name`` pinned for ``iface``."""
    return bpftool.run("-j", "map", "dump", "pinned", str(PIN_ROOT / iface / name))


def pins(iface: str) -> list[str]:
    d = PIN_ROOT / iface
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def one_error_line(stderr: str) -> str:
    """The single ``ironpost-tui: ...`` line an error must be; AssertionError otherwise."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{stderr}"
    assert lines[0].startswith("ironpost-tui: "), lines[0]
    assert "Traceback" not in stderr
    return lines[0]


@contextlib.contextmanager
def in_process_engine(options: EngineOptions) -> Iterator[Engine]:
    """An engine started here and always closed (detached, its lock released)."""
    engine = Engine(options)
    try:
        engine.start()
        yield engine
    finally:
        engine.close()
