"""The limits of the metrics endpoint against abusive clients, and the accounting behind them.

The numbers are constants rather than configuration keys, like the defaults a Go exporter
gets from net/http and the exporter-toolkit, which expose none of them: each is far from what
a scraper needs (a Prometheus scrape is one small request with five headers, answered on a
kept-alive connection) and close enough to what an attacker needs to be a defence.  The README
("Security") lists them.  ``Limits`` holds them so that tests can shrink the times.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from ironpost_tui.model import StrEnum

REQUEST_DEADLINE = 10.0  # s from the connection (or a kept-alive request's first byte) to the end of the request
IDLE_TIMEOUT = 30.0  # s a kept-alive connection may wait for its next request
WRITE_TIMEOUT = 10.0  # s to hand an answer to a client that does not read it
LINGER_SECS = 2.0  # s to read what a refused client still sends before closing (so it reads the answer)
MAX_CONNECTIONS = 256  # open at once, in total
MAX_PER_SOURCE = 16  # open at once from one source: an IPv4 address or an IPv6 /64
MAX_LINE = 8192  # bytes of the request line or of one header line, line ending not counted
MAX_HEADERS = 64  # header lines in one request
MAX_HEADER_BYTES = 64 * 1024  # the whole request head
MAX_BODY_DRAINED = 64 * 1024  # body bytes a GET may carry: read and ignored; more gets 413 and a close
MAX_AUTHORIZATION = 1024  # bytes of an Authorization value; bcrypt reads only 72 bytes of a password
LOGIN_BURST = 10  # failed logins a source may make at once
LOGIN_REFILL_SECS = 6.0  # then one more every this long (10 a minute)
LOGIN_SOURCES = 4096  # sources whose failures are remembered (the least recent go first)
LOGIN_CACHE_TTL = 120.0  # s a successful check is remembered after its last use
LOGIN_CACHE_MAX = 64  # successful checks remembered at most
AUTH_WORKERS = 2  # bcrypt checks at once (one per core here)
AUTH_QUEUE = 16  # bcrypt checks waiting at most; past that 503, without bcrypt
NOTICE_SECS = 60.0  # a kind of refusal is logged (a warning, with counts) at most this often


@dataclass(frozen=True)
class Limits:
    """The endpoint's limits; the defaults are the constants above."""

    request_deadline: float = REQUEST_DEADLINE
    idle_timeout: float = IDLE_TIMEOUT
    write_timeout: float = WRITE_TIMEOUT
    linger_secs: float = LINGER_SECS
    max_connections: int = MAX_CONNECTIONS
    max_per_source: int = MAX_PER_SOURCE
    max_line: int = MAX_LINE
    max_headers: int = MAX_HEADERS
    max_header_bytes: int = MAX_HEADER_BYTES
    max_body_drained: int = MAX_BODY_DRAINED
    login_burst: int = LOGIN_BURST
    login_refill_secs: float = LOGIN_REFILL_SECS
    login_cache_ttl: float = LOGIN_CACHE_TTL
    auth_workers: int = AUTH_WORKERS
    auth_queue: int = AUTH_QUEUE


def peer_address(host: str) -> str:
    """The client's address as text: an IPv4-mapped IPv6 address (a dual-stack socket) as IPv4."""
    ip = ipaddress.ip_address(host.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def source_of(host: str) -> str:
    """The unit the per-source limits count in: an IPv4 address, or an IPv6 /64 (a host gets a whole
    /64 and picks any address in it, so counting addresses would give it 2**64 allowances)."""
    ip = ipaddress.ip_address(peer_address(host))
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class Refusal(StrEnum):
    """Why a connection or a request was turned away (the notice says which)."""

    TOTAL = "connections refused over the total cap"
    SOURCE = "connections refused over the per-source cap"
    LOGINS = "logins refused (429) after too many failures"
    AUTH_BUSY = "logins refused (503) with too many password checks waiting"
    ACCEPT = "accept failures"


class ConnectionCaps:
    """Open connections, in total and by source.  Used from the event loop's thread only."""

    def __init__(self, total: int = MAX_CONNECTIONS, per_source: int = MAX_PER_SOURCE) -> None:
        self.total = total
        self.per_source = per_source
        self._open: dict[str, int] = {}
        self._count = 0

    @property
    def open(self) -> int:
        return self._count

    def from_source(self, source: str) -> int:
        return self._open.get(source, 0)

    def admit(self, source: str) -> Refusal | None:
        """Count a new connection from ``source``, or say why it is refused (then nothing is counted)."""
        if self._count >= self.total:
            return Refusal.TOTAL
        held = self._open.get(source, 0)
        if held >= self.per_source:
            return Refusal.SOURCE
        self._open[source] = held + 1
        self._count += 1
        return None

    def release(self, source: str) -> None:
        held = self._open.get(source, 0)
        if held <= 0:
            return
        self._count -= 1
        if held == 1:
            del self._open[source]
        else:
            self._open[source] = held - 1


# The sources one refusal line names and counts apart: the ones past them are counted together.  Unbounded until
# session 29, a minute of refusals from fresh addresses (a routed IPv6 /48 is 65,536 sources; loopback's 127/8
# to a local user) held some 95 bytes each, about 125 MB a minute at loopback's accept rate (an attacker's review).
NOTICE_SOURCES = 1024


class Notices:
    """Refusals logged as warnings, each kind at most once per ``every`` seconds, with how many
    there were since the last line and the source seen most: an attack costs a few log lines a
    minute, not one a request."""

    def __init__(self, log: logging.Logger, every: float = NOTICE_SECS,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self._log = log
        self._every = every
        self._clock = clock
        self._last: dict[Refusal, float] = {}
        self._counts: dict[Refusal, dict[str, int]] = {}
        self._others: dict[Refusal, int] = {}  # refusals of sources past NOTICE_SOURCES, counted, not named

    def count(self, kind: Refusal, source: str) -> None:
        by_source = self._counts.setdefault(kind, {})
        if source in by_source or len(by_source) < NOTICE_SOURCES:
            by_source[source] = by_source.get(source, 0) + 1
        else:
            self._others[kind] = self._others.get(kind, 0) + 1
        now = self._clock()
        last = self._last.get(kind)
        if last is not None and now - last < self._every:
            return
        self._last[kind] = now
        self._emit(kind, by_source, self._others.pop(kind, 0))
        del self._counts[kind]

    def flush(self) -> None:
        """Log what was counted and not yet said (at stop)."""
        for kind, by_source in list(self._counts.items()):
            self._emit(kind, by_source, self._others.pop(kind, 0))
        self._counts.clear()

    def _emit(self, kind: Refusal, by_source: dict[str, int], others: int) -> None:
        total = sum(by_source.values()) + others
        top, n = max(by_source.items(), key=lambda item: item[1])
        window = f" in the last {self._every:.0f} s" if total > 1 else ""
        if others:
            whom = f"{n} from {top}, over {NOTICE_SOURCES:,} sources"
        else:
            whom = f"{n} from {top}, {len(by_source)} sources" if len(by_source) > 1 else f"from {top}"
        self._log.warning(
            "metrics endpoint: %s: %d%s (%s)", kind.value, total, window, whom,
            extra={"event": "metrics_refused", "why": kind.name.lower(), "count": total, "source": top},
        )  # fmt: skip
