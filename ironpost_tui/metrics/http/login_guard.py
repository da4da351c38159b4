"""Basic auth that a password-guessing loop cannot turn into a CPU burner.

In this order, for each request that needs credentials:

1. ``parse_basic``: a missing, non-ASCII, over-long, non-Basic, badly encoded or colon-less
   ``Authorization``, or a password longer than bcrypt's 72 bytes, is answered 401 at once:
   malformed input tells nothing about the password, so it costs nothing and counts nothing.
2. A source (``limits.source_of``) whose failed logins are over the limit (a token bucket:
   ``LOGIN_BURST`` at once, one more every ``LOGIN_REFILL_SECS``) gets 429 without bcrypt, even
   with the right password: the check comes before the cache, or the cache would answer
   guesses for free while bcrypt is refused.
3. A recent success, remembered by an HMAC of the credentials under a key made at start (not
   the password, nor a hash anyone could compute), is let in without bcrypt and remembered
   ``LOGIN_CACHE_TTL`` longer: a scraper pays bcrypt once, not at every scrape.  Failures are
   never remembered.
4. Otherwise bcrypt decides (``verify``, in a worker thread).  Its token is taken before the
   check and given back on success, so a source cannot run more checks than its allowance by
   sending them all at once; at most ``AUTH_QUEUE`` checks wait, past that 503.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from ironpost_tui.metrics.http.limits import (
    AUTH_QUEUE,
    LOGIN_BURST,
    LOGIN_CACHE_MAX,
    LOGIN_CACHE_TTL,
    LOGIN_REFILL_SECS,
    LOGIN_SOURCES,
    MAX_AUTHORIZATION,
)
from ironpost_tui.metrics.web_config import BasicAuth
from ironpost_tui.model import StrEnum

BCRYPT_MAX_PASSWORD = 72  # bytes: bcrypt reads no more (the bcrypt package refuses longer ones)


class Verdict(StrEnum):
    OK = "ok"
    MISSING = "no credentials"  # 401: what a browser gets before it asks for a password
    MALFORMED = "malformed Authorization"  # 401
    WRONG = "wrong user or password"  # 401
    LIMITED = "too many failed logins from this source"  # 429
    BUSY = "too many password checks waiting"  # 503
    CHECK = "needs bcrypt"  # not an answer: run ``verify``


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str


def parse_basic(value: str | None) -> Credentials | Verdict:
    """The credentials of an ``Authorization`` value (Latin-1 text of its bytes), or why not."""
    if value is None:
        return Verdict.MISSING
    if len(value) > MAX_AUTHORIZATION or not value.isascii():
        return Verdict.MALFORMED
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "basic":
        return Verdict.MALFORMED
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        return Verdict.MALFORMED
    user, sep, password = decoded.partition(":")
    if not sep or len(password.encode("utf-8")) > BCRYPT_MAX_PASSWORD:
        return Verdict.MALFORMED
    return Credentials(user, password)


class LoginGuard:
    """Failed logins limited per source, and a cache of recent successes (thread-safe: ``admit``
    runs on the event loop, ``verify`` in a worker)."""

    def __init__(
        self,
        auth: BasicAuth,
        *,
        burst: int = LOGIN_BURST,
        refill_secs: float = LOGIN_REFILL_SECS,
        cache_ttl: float = LOGIN_CACHE_TTL,
        queue: int = AUTH_QUEUE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._auth = auth
        self._burst = burst
        self._refill = refill_secs
        self._ttl = cache_ttl
        self._queue = queue
        self._clock = clock
        self._key = os.urandom(32)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # source -> (tokens, at)
        self._ok: OrderedDict[bytes, float] = OrderedDict()  # HMAC of credentials -> expiry
        self._pending = 0
        self._lock = threading.Lock()

    def admit(self, source: str, creds: Credentials) -> Verdict:
        """LIMITED, BUSY, OK (a recent success) or CHECK (a token is taken: call ``verify``)."""
        now = self._clock()
        with self._lock:
            tokens = self._tokens(source, now)
            if tokens < 1:
                return Verdict.LIMITED
            key = self._digest(creds)
            expiry = self._ok.get(key)
            if expiry is not None and expiry > now:
                self._ok[key] = now + self._ttl
                self._ok.move_to_end(key)
                return Verdict.OK
            if self._pending >= self._queue:
                return Verdict.BUSY
            self._pending += 1
            self._set(source, tokens - 1, now)
            return Verdict.CHECK

    def verify(self, source: str, creds: Credentials) -> Verdict:
        """bcrypt (slow: not on the event loop), after ``admit`` said CHECK; OK or WRONG."""
        try:
            ok = self._auth.check(creds.user, creds.password)
        finally:
            with self._lock:
                self._pending -= 1
        now = self._clock()
        with self._lock:
            if not ok:
                return Verdict.WRONG
            self._set(source, self._tokens(source, now) + 1, now)  # the token comes back
            key = self._digest(creds)
            self._ok[key] = now + self._ttl
            self._ok.move_to_end(key)
            while len(self._ok) > LOGIN_CACHE_MAX:
                self._ok.popitem(last=False)
            return Verdict.OK

    def limited(self, source: str) -> bool:
        with self._lock:
            return self._tokens(source, self._clock()) < 1

    @property
    def cached(self) -> int:
        with self._lock:
            now = self._clock()
            return sum(1 for expiry in self._ok.values() if expiry > now)

    # --- under the lock ---------------------------------------------------------
    def _tokens(self, source: str, now: float) -> float:
        held = self._buckets.get(source)
        if held is None:
            return float(self._burst)
        tokens, at = held
        return min(float(self._burst), tokens + max(0.0, now - at) / self._refill)

    def _set(self, source: str, tokens: float, now: float) -> None:
        if tokens >= self._burst:
            self._buckets.pop(source, None)  # a full bucket is the default: keep the table small
            return
        self._buckets[source] = (tokens, now)
        self._buckets.move_to_end(source)
        while len(self._buckets) > LOGIN_SOURCES:
            self._buckets.popitem(last=False)

    def _digest(self, creds: Credentials) -> bytes:
        user = creds.user.encode("utf-8", "surrogateescape")
        data = len(user).to_bytes(4, "big") + user + creds.password.encode("utf-8", "surrogateescape")
        return hmac.new(self._key, data, hashlib.sha256).digest()
