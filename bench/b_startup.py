"""4. Start-up: process spawn to attached.

* headless: ``ironpost-tui IFACE --headless`` until its ``ready:`` line, beside the floor: a process of
  the same interpreter that imports BCC, compiles an empty XDP program, attaches it through a BPF
  link and prints ``ready``.  Budget: <= 2.5x the floor.  Rounds alternate, medians.
* console: ``ironpost-tui IFACE`` in a detached tmux pane (a private tmux server) until the pane
  first shows anything.  Budget: 1 s.  Skipped when ironpost_tui/ui does not exist.

The floor process's RSS at ``ready`` is kept for the memory benchmark.
"""

from __future__ import annotations

import compileall
import contextlib
import os
import secrets
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import core, rig
from .core import Report, median

NAME = "startup"

FLOOR_SCRIPT = r"""
import ctypes, os, sys, time
import bcc
b = bcc.BPF(text=b"int f(struct xdp_md *c){return XDP_PASS;}")
fn = b.load_func(b"f", bcc.BPF.XDP)
lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
lib.bpf_link_create.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
ifindex = int(open(f"/sys/class/net/{sys.argv[1]}/ifindex").read())
link = lib.bpf_link_create(fn.fd, ifindex, 37, None)  # BPF_XDP: detaches when the process ends
if link < 0:
    sys.exit(f"bpf_link_create: errno {ctypes.get_errno()}")
print("ready", flush=True)
time.sleep(3600)
"""


def floor_once(iface: str) -> tuple[float, float]:
    """(seconds spawn -> ready, RSS MiB at ready) of the floor process."""
    with rig.started([rig.PY, "-c", FLOOR_SCRIPT, iface]) as p:
        at, _ = p.wait_line("ready", 120)
        return at - p.t_spawn, rig.proc_rss_mib(p.pid)


def headless_once(iface: str, workdir: Path) -> tuple[float, float, str]:
    """(seconds spawn -> ready line, RSS MiB at ready, the ready line)."""
    with rig.agent(iface, workdir, rig.agent_config()) as ag:
        at, line = ag.wait_line("ready:", 120)
        return at - ag.t_spawn, rig.proc_rss_mib(ag.pid), line


# --------------------------------------------------------------------------- #
# the console in tmux


def console_available() -> bool:
    return (core.REPO / "ironpost_tui" / "ui").is_dir()


class Tmux:
    """A private tmux server (its own socket) with one detached session."""

    def __init__(self, width: int = 160, height: int = 48) -> None:
        rig.need("tmux")
        self.socket = f"ironpost-bench-{secrets.token_hex(3)}"
        self.width, self.height = width, height
        self.session = "bench"
        self.t_spawn = 0.0

    def _tmux(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return rig.sh("tmux", "-L", self.socket, *args, check=check)

    def start(self, argv: list[str], env: dict[str, str]) -> None:
        envs: list[str] = []
        for k in ("PATH", "HOME", "LANG", "LC_ALL"):
            if k in env:
                envs += ["-e", f"{k}={env[k]}"]
        cmd = " ".join(shlex.quote(a) for a in argv)
        self.t_spawn = time.monotonic()
        self._tmux("new-session", "-d", "-s", self.session, "-x", str(self.width), "-y", str(self.height),
                   *envs, cmd)  # fmt: skip

    def capture(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", self.session, check=False).stdout

    def pane_pid(self) -> int:
        return int(self._tmux("display-message", "-p", "-t", self.session, "#{pane_pid}").stdout.strip())

    def send(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", self.session, *keys, check=False)

    def alive(self) -> bool:
        return self._tmux("has-session", "-t", self.session, check=False).returncode == 0

    def kill(self) -> None:
        self._tmux("kill-server", check=False)
        sock = Path(os.environ.get("TMUX_TMPDIR", "/tmp")) / f"tmux-{os.getuid()}" / self.socket
        sock.unlink(missing_ok=True)


@contextlib.contextmanager
def console(iface: str, workdir: Path, config: str) -> Iterator[Tmux]:
    """``ironpost-tui IFACE`` (the console) in tmux; quit, killed and cleaned up at the end."""
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = workdir / "ironpost.toml"
    cfg.write_text(config)
    argv = [*rig.IRONPOST, iface, "--config", str(cfg), "--state-dir", str(workdir / "state"),
            "--audit-log", str(workdir / "audit.log")]  # fmt: skip
    t = Tmux()
    try:
        t.start(argv, rig.agent_env())
        yield t
    finally:
        pid = None
        with contextlib.suppress(Exception):
            pid = t.pane_pid()
        t.kill()  # SIGHUP to the pane: the console detaches on SIGHUP
        if pid:
            end = time.monotonic() + 5
            while Path(f"/proc/{pid}").exists() and time.monotonic() < end:
                time.sleep(0.05)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        rig.sh(*rig.IRONPOST, "cleanup", iface, check=False)


def wait_first_frame(t: Tmux, timeout: float = 60) -> float:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        screen = t.capture()
        if screen.strip():
            return time.monotonic() - t.t_spawn
        if not t.alive():
            raise rig.BenchError("the console exited before showing anything")
        time.sleep(0.005)
    raise rig.BenchError(f"the console showed nothing within {timeout} s")


def run(report: Report, opts: core.Options) -> None:
    rounds = 2 if opts.quick else 5
    figs: dict[str, Any] = {"rounds": rounds, "floor_s": [], "floor_rss_mib": [], "headless_s": [],
                            "headless_rss_mib": []}  # fmt: skip
    report.figures[NAME] = figs
    # The bytecode an installed package has (pip compiles it): with PYTHONDONTWRITEBYTECODE set in the
    # caller's environment every start would compile the modules edited since the last write.
    import ironpost_tui

    compileall.compile_dir(Path(ironpost_tui.__file__).parent, quiet=1)
    with rig.tmpdir("startup") as wd, rig.lab() as lab:
        floor_once(lab.host_if)  # warm the page cache for both
        for i in range(rounds):
            s, rss = floor_once(lab.host_if)
            figs["floor_s"].append(s)
            figs["floor_rss_mib"].append(rss)
            s, rss, line = headless_once(lab.host_if, wd / f"agent-{i}")
            figs["headless_s"].append(s)
            figs["headless_rss_mib"].append(rss)
            figs["ready_line"] = line
        h, f = median(figs["headless_s"]), median(figs["floor_s"])
        report.budget(NAME, "headless: spawn to ready", h, "s", h <= 2.5 * f, "<= 2.5x floor",
                      beside=f"floor {f:.2f} s", ratio=h / f)  # fmt: skip
        if not console_available():
            report.skip(NAME, "console: spawn to first frame", "console: not built yet")
            return
        firsts = []
        for i in range(rounds):
            with console(lab.host_if, wd / f"console-{i}", rig.agent_config()) as t:
                firsts.append(wait_first_frame(t))
                figs["console_first_screen"] = t.capture()
        figs["console_first_frame_s"] = firsts
        c = median(firsts)
        report.budget(NAME, "console: spawn to first frame", c, "s", c <= 1.0, "<= 1 s",
                      beside=f"floor {f:.2f} s", ratio=c / f)  # fmt: skip
