"""Traffic for live tests: UDP from a lab's namespace to sockets on the host side.

``Probe`` tells whether datagrams from ``ns_ip4`` pass, by a burst followed by an IPv6 sentinel;
``Flood`` keeps datagrams from ``ns_ip4`` flowing from a thread.
"""

from __future__ import annotations

import select
import socket
import threading
import time

from . import netlab


class Probe:
    """Datagrams ns_ip4 -> host_ip4 (the ones rules are about) and ns_ip6 -> host_ip6 (a sentinel).

    With the program attached natively, veth hands frames to XDP in the order
    they were sent; so once the v6 sentinel sent after a v4 burst is at its
    socket, every datagram of the burst has been through the program.  The v6
    path must therefore never be dropped in a test using ``burst``.
    """

    def __init__(self, lab: netlab.Lab) -> None:
        self.lab = lab
        for a in (lab.ns_ip4, lab.host_ip4, lab.ns_ip6, lab.host_ip6):
            assert netlab.allowed_address(a)
        self.rx4 = netlab.udp_receiver(lab.host_ip4)
        self.rx6 = netlab.udp_receiver(lab.host_ip6)
        self.port4 = self.rx4.getsockname()[1]
        self.port6 = self.rx6.getsockname()[1]
        self.tx4 = netlab.udp_sender(lab, lab.ns_ip4)
        self.tx6 = netlab.udp_sender(lab, lab.ns_ip6)
        self._round = 0

    @staticmethod
    def _drain(sock: socket.socket) -> list[bytes]:
        got = []
        while True:
            try:
                got.append(sock.recv(2048))
            except BlockingIOError:
                return got

    def burst(self, n: int = 20, timeout: float = 3.0) -> int:
        """Send ``n`` v4 datagrams, then the v6 sentinel; how many of the ``n`` arrived."""
        self._round += 1
        tag = b"probe-%d-" % self._round
        self._drain(self.rx4)
        for i in range(n):
            self.tx4.sendto(tag + b"%d" % i, (self.lab.host_ip4, self.port4))
        sentinel = tag + b"sentinel"
        self.tx6.sendto(sentinel, (self.lab.host_ip6, self.port6))
        end = time.monotonic() + timeout
        while sentinel not in self._drain(self.rx6):
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError("the IPv6 sentinel never arrived: is IPv6 dropped?")
            select.select([self.rx6], [], [], min(left, 0.05))
        return sum(1 for d in self._drain(self.rx4) if d.startswith(tag))

    def until(self, passes: bool, within: float = 1.0) -> float:
        """Probe (one datagram and its sentinel at a time) until datagrams from ns_ip4 pass, or with
        ``passes=False`` are dropped; the seconds it took, AssertionError when not within ``within``."""
        t0 = time.monotonic()
        while True:
            arrived = self.burst(1, timeout=max(within, 0.1))
            if bool(arrived) == passes:
                return time.monotonic() - t0
            if time.monotonic() - t0 > within:
                raise AssertionError(f"datagrams from {self.lab.ns_ip4} still {'dropped' if passes else 'pass'} "
                                     f"{within} s later")  # fmt: skip

    def close(self) -> None:
        for s in (self.rx4, self.rx6, self.tx4, self.tx6):
            s.close()


class Flood:
    """A thread sending UDP ns_ip4 -> host_ip4:port: ``per_ms`` datagrams, a 1 ms sleep, again (the
    default, 10, makes a few thousand per second)."""

    def __init__(self, lab: netlab.Lab, per_ms: int = 10) -> None:
        self.lab = lab
        self.per_ms = per_ms
        self.rx = netlab.udp_receiver(lab.host_ip4)
        self.port = self.rx.getsockname()[1]
        self.tx = netlab.udp_sender(lab, lab.ns_ip4)
        self.sent = 0
        self.errors = 0
        self.received = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started = self.stopped = 0.0

    def _run(self) -> None:
        dest = (self.lab.host_ip4, self.port)
        while not self._stop.is_set():
            for _ in range(self.per_ms):
                try:
                    self.tx.sendto(b"flood %d" % self.sent, dest)
                    self.sent += 1
                except OSError:
                    self.errors += 1
            time.sleep(0.001)

    def start(self) -> None:
        self.started = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        self.stopped = time.monotonic()

    def drain(self) -> int:
        self.received += len(Probe._drain(self.rx))
        return self.received

    def close(self) -> None:
        self.stop()
        self.tx.close()
        self.rx.close()


class SynBursts:
    """TCP SYNs ns_ip4 -> host_ip4:``port`` in bursts, from a thread: ``n`` non-blocking connects
    every ``every`` seconds (a SYN each; the port is closed, so the host answers RST, inside the
    lab).  The sockets are closed right after each burst: nothing retransmits."""

    def __init__(self, lab: netlab.Lab, n: int = 150, every: float = 1.0, port: int = 9) -> None:
        assert netlab.allowed_address(lab.ns_ip4) and netlab.allowed_address(lab.host_ip4)
        self.lab, self.n, self.every, self.port = lab, n, every, port
        self.bursts = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def burst(self) -> None:
        socks = []
        with netlab.in_netns(self.lab.ns):
            try:
                for _ in range(self.n):
                    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    socks.append(s)
                    s.setblocking(False)
                    try:
                        s.connect((self.lab.host_ip4, self.port))
                    except (BlockingIOError, ConnectionRefusedError):
                        pass
            finally:
                for s in socks:
                    s.close()
        self.bursts += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            self.burst()
            self._stop.wait(self.every)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
