"""The embedded demo lab: a network namespace joined by a veth pair, with
hosts that browse, resolve, ping, scan and flood, so every pane is live.

Fixed names, so a run killed with -9 is cleaned up by the next one: the namespace, the veth
pair, the program and the demo's state directory (its rules and audit log, ``STATE_DIR``).  Only
addresses from 198.18.0.0/15 and 2001:db8::/32, inside the lab.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ironpost_tui.kernel.host import RUN_DIR

NS = "ironpost-demo"
HOST_IF = "ipdemo0"
PEER_IF = "ipdemo1"
HOST4, NET4 = "198.18.200.1", "198.18.200.0/24"
HOST6, NET6 = "2001:db8:200::1", "2001:db8:200::/64"
CLIENT4, SCANNER4, FLOODER4 = "198.18.200.10", "198.18.200.66", "198.18.200.99"
CLIENT6 = "2001:db8:200::10"
WEB_PORT, DNS_PORT = 8080, 5300
# The demo's rules and audit log: a fixed place under root's /run/ironpost (not a fresh /tmp
# directory per run, which a run killed with -9 left behind), removed with the lab.
STATE_DIR = RUN_DIR / "demo"


@dataclass(frozen=True)
class DemoLab:
    ns: str = NS
    host_if: str = HOST_IF
    peer_if: str = PEER_IF


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def remove() -> list[str]:
    """Remove the lab and anything left in it (idempotent); says what it removed."""
    done = []
    if Path(f"/run/netns/{NS}").exists():
        pids = _ip("netns", "pids", NS, check=False).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        if pids:
            done.append(f"stopped {len(pids)} traffic generator process(es)")
    if Path(f"/sys/class/net/{HOST_IF}").exists():
        from ironpost_tui.kernel.cleanup import cleanup

        done.extend(cleanup(HOST_IF))
        _ip("link", "del", HOST_IF, check=False)
        done.append(f"removed {HOST_IF}")
    if Path(f"/run/netns/{NS}").exists():
        _ip("netns", "del", NS, check=False)
        done.append(f"removed namespace {NS}")
    if STATE_DIR.is_symlink():  # not made by us: removed, never followed
        STATE_DIR.unlink()
    elif STATE_DIR.exists():
        shutil.rmtree(STATE_DIR)
        done.append(f"removed {STATE_DIR}")
    return done


def create() -> DemoLab:
    """A fresh lab: leftovers of an earlier run (kill -9) are removed first."""
    remove()
    try:
        _ip("netns", "add", NS)
        _ip("link", "add", HOST_IF, "type", "veth", "peer", "name", PEER_IF, "netns", NS)
        _ip("addr", "add", f"{HOST4}/24", "dev", HOST_IF)
        _ip("-6", "addr", "add", f"{HOST6}/64", "dev", HOST_IF, "nodad")
        for addr in (CLIENT4, SCANNER4, FLOODER4):
            _ip("-n", NS, "addr", "add", f"{addr}/24", "dev", PEER_IF)
        _ip("-n", NS, "-6", "addr", "add", f"{CLIENT6}/64", "dev", PEER_IF, "nodad")
        _ip("-n", NS, "link", "set", "lo", "up")
        _ip("-n", NS, "link", "set", PEER_IF, "up")
        _ip("link", "set", HOST_IF, "up")
    except subprocess.CalledProcessError as exc:
        remove()
        raise RuntimeError(f"could not build the demo lab: {exc.stderr.strip()}") from None
    return DemoLab()


def start_traffic() -> subprocess.Popen[bytes]:
    """The traffic generator, inside the namespace.

    Isolated (``-I``: no current directory, script directory or PYTHON* variables on the path) and
    started from ``/``: as root, ``python -m`` from the caller's directory would run whatever
    ``ironpost_tui/`` a user planted there."""
    return subprocess.Popen(
        ["ip", "netns", "exec", NS, sys.executable, "-I", "-m", "ironpost_tui.demo.traffic"],
        cwd="/",
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def stop_traffic(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=2)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def wait_ready(timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if Path(f"/sys/class/net/{HOST_IF}").exists():
            return
        time.sleep(0.05)


class DemoServices:
    """What the lab's hosts talk to on the host side: a web server and a DNS-like responder."""

    def __init__(self) -> None:
        import http.server
        import threading

        class Quiet(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                body = b"ironpost demo\n"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self._http = http.server.ThreadingHTTPServer((HOST4, WEB_PORT), Quiet)
        self._udp = []
        for family, addr in ((socket.AF_INET, HOST4), (socket.AF_INET6, HOST6)):
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.bind((addr, DNS_PORT))
            sock.settimeout(0.2)
            self._udp.append(sock)
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True),
            *(threading.Thread(target=self._answer, args=(sock,), daemon=True) for sock in self._udp),
        ]
        for t in self._threads:
            t.start()

    def _answer(self, sock: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                data, peer = sock.recvfrom(512)
            except OSError:
                continue
            sock.sendto(data[:2] + b"\x81\x80" + data[4:], peer)

    def stop(self) -> None:
        self._stop.set()
        self._http.shutdown()
        self._http.server_close()
        for t in self._threads:
            t.join(timeout=1)
        for sock in self._udp:
            sock.close()
