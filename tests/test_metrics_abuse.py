"""The metrics endpoint under abuse, end to end: a headless agent on a veth lab, with basic auth
(bcrypt cost 10), scraped every second by a real Prometheus (the distribution's) while, for 30 s,
the test throws at it at once:

* 200 slowloris connections from 8 sources (25 each): the request line, then one byte a second,
  reopened as soon as the agent closes them;
* a header fuzzer: non-ASCII, malformed, huge and doubled ``Authorization``, 1,000 headers, an
  over-long request line, bodies on GET (one holding a second request), chunked bodies, folded
  lines, NUL, garbage, other versions and methods;
* a wrong-password loop.

The attack starts before Prometheus does, so that Prometheus has to connect through it (it keeps
its connection alive; one made before the attack would prove little), and a scrape a second on a new
connection each time runs beside it.

Then: at least 95% of the scrapes in the 30 s succeeded (Prometheus' own ``up`` series), and 95% of
the scrapes on new connections; the
agent's RSS stayed under 1.5 times its idle RSS; its log holds no traceback and grew by at most
1,000 lines; every fuzzed request got the answer its fault calls for; the password loop ran bcrypt
only as often as the per-source limit allows; no slowloris connection outlived the deadline.

Every client is on loopback (127.0.0.0/8 is this host's own: one address per attacking source,
Prometheus alone on 127.0.0.1), the agent's metrics listen on 127.0.0.1 as in the other metrics tests.
"""

from __future__ import annotations

import base64
import os
import random
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support import netlab
from support.agents import AgentPool
from support.metrics_lab import AgentFiles, RawClient, basic, bcrypt_hash, fetch, free_port, prometheus, wait_until

from ironpost_tui.metrics.http.limits import LOGIN_BURST, LOGIN_REFILL_SECS, REQUEST_DEADLINE

pytestmark = pytest.mark.root

ATTACK_SECS = 30.0
PASSWORD = "s3cret-scrape"
SLOW_SOURCES = [f"127.0.0.{i}" for i in range(10, 18)]
SLOW_EACH = 25  # 8 x 25 = 200 slowloris connections
FUZZ_SOURCE = "127.0.0.30"
GUESS_SOURCE = "127.0.0.40"

GET = b"GET /metrics HTTP/1.1\r\nHost: agent\r\n"
SMUGGLED = b"GET /nothing HTTP/1.1\r\nHost: agent\r\n\r\n"


def b64(text: bytes) -> bytes:
    return base64.b64encode(text)


# (name, request bytes, the status it must get)
FUZZ: list[tuple[str, bytes, int]] = [
    ("non-ASCII Authorization", GET + b"Authorization: Basic \xc3\xa9\xff\xfe\x80\r\n\r\n", 401),
    ("non-ASCII scheme", GET + b"Authorization: B\xe4sic " + b64(b"prometheus:x") + b"\r\n\r\n", 401),
    ("bad base64", GET + b"Authorization: Basic !!!***\r\n\r\n", 401),
    ("no colon", GET + b"Authorization: Basic " + b64(b"prometheus") + b"\r\n\r\n", 401),
    ("not UTF-8", GET + b"Authorization: Basic " + b64(b"\xff\xfe:\xff") + b"\r\n\r\n", 401),
    ("huge Authorization", GET + b"Authorization: Basic " + b64(b"prometheus:" + b"x" * 5000) + b"\r\n\r\n", 401),
    ("Authorization past a line", GET + b"Authorization: Basic " + b"QUJD" * 2100 + b"\r\n\r\n", 431),
    ("password past bcrypt", GET + b"Authorization: Basic " + b64(b"prometheus:" + b"p" * 73) + b"\r\n\r\n", 401),
    ("two Authorization", GET + b"Authorization: Basic " + b64(b"a:b") + b"\r\nAuthorization: Basic x\r\n\r\n", 401),
    ("Bearer", GET + b"Authorization: Bearer abc.def\r\n\r\n", 401),
    ("empty Authorization", GET + b"Authorization:\r\n\r\n", 401),
    ("1,000 headers", GET + b"".join(b"X-Fuzz-%d: %d\r\n" % (i, i) for i in range(1000)) + b"\r\n", 431),
    ("long request line", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", 414),
    ("body on GET", GET + b"Content-Length: %d\r\n\r\n" % len(SMUGGLED) + SMUGGLED, 401),
    ("chunked body on GET", GET + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 401),
    ("huge body on GET", GET + b"Content-Length: 1000000000\r\n\r\n" + b"z" * 4096, 413),
    ("two lengths", GET + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400),
    ("length and chunked", GET + b"Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    ("folded line", GET + b"X-A: 1\r\n  folded\r\n\r\n", 400),
    ("NUL in a header", GET + b"X-A: a\x00b\r\n\r\n", 400),
    ("no colon in a header", GET + b"Just some words\r\n\r\n", 400),
    ("HTTP/2.0", b"GET /metrics HTTP/2.0\r\n\r\n", 505),
    ("POST", b"POST /metrics HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi", 405),
]


@dataclass
class Tally:
    """What one attacker saw."""

    statuses: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    lifetimes: list[float] = field(default_factory=list)  # slowloris: how long the agent let each live
    opened: int = 0


def slowloris(port: int, stop: threading.Event, tally: Tally) -> None:
    """SLOW_EACH connections from each of SLOW_SOURCES: a request line, then a byte a second;
    one the agent closes is opened again at the next tick."""
    open_socks: dict[socket.socket, float] = {}
    by_source: Counter[str] = Counter()
    source_of: dict[socket.socket, str] = {}
    try:
        while not stop.is_set():
            for src in SLOW_SOURCES:
                while by_source[src] < SLOW_EACH and not stop.is_set():
                    try:
                        s = socket.create_connection(("127.0.0.1", port), timeout=2, source_address=(src, 0))
                        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: agent\r\nX-Slow: ")
                    except OSError:
                        tally.statuses["connect refused or reset"] += 1
                        break
                    s.setblocking(False)
                    open_socks[s] = time.monotonic()
                    source_of[s] = src
                    by_source[src] += 1
                    tally.opened += 1
            stop.wait(1.0)
            now = time.monotonic()
            for s, opened in list(open_socks.items()):
                closed, answer = False, b""
                try:
                    answer = s.recv(4096)
                    closed = True  # an answer (408) or the end: the agent closed it
                except BlockingIOError:
                    try:
                        s.send(b"x")
                    except OSError:
                        closed = True
                except OSError:
                    closed = True
                if closed:
                    kind = "408 then closed" if answer.startswith(b"HTTP/1.1 408") else "closed without an answer"
                    tally.statuses[kind] += 1
                    if answer.startswith(b"HTTP/1.1 408"):
                        tally.lifetimes.append(now - opened)
                    s.close()
                    del open_socks[s]
                    by_source[source_of.pop(s)] -= 1
                elif now - opened > REQUEST_DEADLINE + 3:
                    tally.problems.append(f"a slowloris connection open for {now - opened:.1f} s")
    finally:
        for s in open_socks:
            s.close()


def fuzzer(port: int, stop: threading.Event, tally: Tally) -> None:
    rng = random.Random(15)
    cases = [*FUZZ, ("garbage", b"", 400)]
    while not stop.is_set():
        name, data, want = cases[rng.randrange(len(cases))]
        if name == "garbage":  # printable junk without a request line's shape, then a blank line
            data = bytes(rng.choice(b"abcdefghij:/ %") for _ in range(rng.randrange(1, 200))) + b"\r\n\r\n"
        try:
            with RawClient(port, FUZZ_SOURCE, timeout=5) as c:
                c.send(data)
                status = c.response()[0]
        except OSError as exc:
            tally.statuses[f"{name}: no answer"] += 1
            tally.problems.append(f"{name}: no answer: {exc!r}")
            continue
        tally.statuses[f"{name}: {status}"] += 1
        if status != want:
            tally.problems.append(f"{name}: {status}, not {want}")


def guesser(port: int, stop: threading.Event, tally: Tally) -> None:
    i = 0
    while not stop.is_set():
        i += 1
        user = "prometheus" if i % 2 else f"user{i}"
        request = GET + f"Authorization: {basic(user, f'guess-{i}')}\r\n\r\n".encode()
        try:
            with RawClient(port, GUESS_SOURCE, timeout=5) as c:
                c.send(request)
                status = c.response()[0]
        except OSError as exc:
            tally.problems.append(f"guess {i}: no answer: {exc!r}")
            continue
        tally.statuses[str(status)] += 1


def fresh_scraper(port: int, stop: threading.Event, tally: Tally) -> None:
    """A scrape a second on a new connection each time (Prometheus keeps its connection alive, so
    it alone would not show whether a new client still gets in)."""
    while not stop.wait(1.0):
        try:
            status = fetch(f"http://127.0.0.1:{port}/metrics", auth=("prometheus", PASSWORD), timeout=2)[0]
        except OSError as exc:
            status = 0
            tally.problems.append(repr(exc))
        tally.statuses[str(status)] += 1


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def test_prometheus_keeps_scraping_through_slowloris_fuzzing_and_guessing(
    lab: netlab.Lab, agents: AgentPool, tmp_path: Path
) -> None:
    files = AgentFiles.make(tmp_path)
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  prometheus: {bcrypt_hash(PASSWORD, rounds=10)}\n")
    port = free_port()
    agent = agents.start(lab.host_if, *files.args(), "--metrics-port", str(port), "--web-config", str(web))
    agent.wait_ready()
    target = f"127.0.0.1:{port}"
    up = f'up{{job="ironpost",instance="{target}"}}'
    for _ in range(5):  # the agent as it idles while scraped
        assert fetch(f"http://{target}/metrics", auth=("prometheus", PASSWORD))[0] == 200
        time.sleep(0.3)
    idle = sorted(rss_kib(agent.pid) for _ in range(5) if time.sleep(0.2) is None)[2]
    lines_before = len(agent.out) + len(agent.err)

    # The attack starts first: Prometheus has to connect through it, not keep a connection made before.
    stop = threading.Event()
    tallies = {"slowloris": Tally(), "fuzzer": Tally(), "guesser": Tally(), "fresh": Tally()}
    attackers = [
        threading.Thread(target=fn, args=(port, stop, tallies[name]), name=name, daemon=True)
        for name, fn in (("slowloris", slowloris), ("fuzzer", fuzzer), ("guesser", guesser))
    ]
    attack_start = time.monotonic()
    for t in attackers:
        t.start()
    peak = idle
    (tmp_path / "prom").mkdir()
    auth = {"basic_auth": {"username": "prometheus", "password": PASSWORD}}
    try:
        time.sleep(3)
        with prometheus(tmp_path / "prom", [target], extra_scrape=auth) as prom:
            wait_until("Prometheus scraped once", lambda: prom.value(f"count_over_time({up}[1m])") is not None)
            fresh = threading.Thread(target=fresh_scraper, args=(port, stop, tallies["fresh"]), daemon=True)
            fresh.start()
            attackers.append(fresh)
            t0 = time.time()
            while time.time() - t0 < ATTACK_SECS:
                peak = max(peak, rss_kib(agent.pid))
                time.sleep(0.5)
            t1 = time.time()
            stop.set()
            for t in attackers:
                t.join(15)
            window = int(t1 - t0)
            attack_secs = time.monotonic() - attack_start

            def over_window(fn: str) -> float:
                result = prom.api("query", query=f"{fn}({up}[{window}s])", time=f"{t1:.3f}")["result"]
                return float(result[0]["value"][1])

            scrapes, succeeded = over_window("count_over_time"), over_window("sum_over_time")
            assert prom.proc is not None and prom.proc.poll() is None
    finally:
        stop.set()
    for name, tally in tallies.items():
        print(f"{name}: opened {tally.opened}, {dict(tally.statuses)}, {len(tally.problems)} problems")
    print(f"scrapes {succeeded:.0f}/{scrapes:.0f}; RSS idle {idle} KiB, peak {peak} KiB; "
          f"log +{len(agent.out) + len(agent.err) - lines_before} lines")  # fmt: skip

    # Prometheus scraped all along, and 95% of its scrapes in the window succeeded; so did 95% of
    # the scrapes on a new connection each.
    assert scrapes >= 0.8 * window, (scrapes, window)
    assert succeeded / scrapes >= 0.95, (succeeded, scrapes)
    fresh_ok = tallies["fresh"].statuses["200"]
    assert fresh_ok >= 0.95 * sum(tallies["fresh"].statuses.values()) and fresh_ok >= 0.8 * window, tallies["fresh"]
    # Memory and the log.
    assert peak < 1.5 * idle, (peak, idle)
    log = agent.stdout + "\n" + agent.stderr
    assert "Traceback" not in log, log[-5000:]
    assert len(agent.out) + len(agent.err) - lines_before <= 1000
    # The attacks were real, and got what the limits say.
    slow, fuzz, guess = tallies["slowloris"], tallies["fuzzer"], tallies["guesser"]
    assert slow.opened >= 200 and slow.statuses["408 then closed"] >= 100, slow.statuses
    assert not slow.problems, slow.problems[:5]
    assert slow.lifetimes and max(slow.lifetimes) <= REQUEST_DEADLINE + 2.5, max(slow.lifetimes)
    answered = sum(n for k, n in fuzz.statuses.items() if not k.endswith("no answer"))
    assert answered >= 300 and {name for name, _, _ in FUZZ} <= {k.rsplit(":", 1)[0] for k in fuzz.statuses}
    assert [p for p in fuzz.problems if "no answer" not in p] == []  # every answer the right one
    assert len(fuzz.problems) <= 0.01 * answered, fuzz.problems[:5]
    assert set(guess.statuses) <= {"401", "429"} and guess.statuses["429"] > 0, guess.statuses
    assert guess.statuses["401"] <= LOGIN_BURST + attack_secs / LOGIN_REFILL_SECS + 2, guess.statuses  # bcrypt runs
    assert not guess.problems, guess.problems[:5]
    # Still serving, and the right password still works from anywhere but the guesser.
    status, _, body = fetch(f"http://{target}/metrics", auth=("prometheus", PASSWORD))
    assert status == 200 and b"ironpost_build_info" in body
    assert agent.proc.poll() is None and os.path.exists(f"/proc/{agent.pid}")
