"""The LAPI over HTTP: httpx, a timeout on every call, TLS verified against ``ca_file`` when given.

httpx rather than pycrowdsec: pycrowdsec (0.0.5, 2023) wraps requests with no per-call timeout and
covers the bouncer side only; httpx is maintained, has timeouts and a CA setting per client, and the two
endpoints used here (the decision stream, and login + alerts for the sensor) are a few lines each.
The credentials are read at start with the configuration's ownership checks (trust.py).
"""

from __future__ import annotations

import codecs
import json
import logging
import os
import ssl
import sys
from pathlib import Path
from typing import Any

import yaml

from ironpost_tui.config.check import ConfigError
from ironpost_tui.config.crowdsec import CrowdSecSettings
from ironpost_tui.engine.crowdsec import stream_json
from ironpost_tui.engine.crowdsec.deadline import CallDeadline
from ironpost_tui.trust import file_problem
from ironpost_tui.version import __version__

# httpx's __init__ imports its command-line tool (rich, click, pygments) when it can: the core never pays
# for a UI library (tests/test_import_hygiene.py), so that import fails and httpx falls back without it.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
import httpx  # noqa: E402

MAX_FILE = 64 * 1024
MAX_CA_FILE = 1024 * 1024
# A decision stream larger than this, or slower than STREAM_DEADLINE in all, is refused (the pull fails and
# is retried; what is in force stays): 100,000 decisions are about 25 MiB.
MAX_BODY = 256 * 1024 * 1024
STREAM_DEADLINE = 120.0
# The login's and the alerts' answers: a token, a list of ids.  Larger, or slower in all, is an error.
MAX_ANSWER = 1024 * 1024
ANSWER_DEADLINE = 30.0
logging.getLogger("httpx").setLevel(logging.WARNING)  # not a log line per pull
USER_AGENT = f"ironpost-tui/{__version__}"


class LapiError(Exception):
    """A call that failed: the LAPI unreachable, an error status, a body that is not what it should be."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status  # the HTTP status of an answer that was an error, else None


def read_secret(path: Path, what: str, *, secret: bool = True, limit: int = MAX_FILE) -> str:
    """A credentials file's text, if it is a regular file only its owner (root) may write and (``secret``)
    others may not read; ConfigError (one line) otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise ConfigError(f"[crowdsec] {what} {path}: {exc.strerror}", title="CrowdSec") from exc
    try:
        st = os.fstat(fd)
        problem = file_problem(st, path, kind=what)
        if problem is None and secret and st.st_mode & 0o044:
            problem = f"readable by its group or others (mode {st.st_mode & 0o777:o}): chmod 600 {path}"
        if problem is None and st.st_size > limit:
            problem = f"larger than {limit} bytes"
        if problem is not None:
            raise ConfigError(f"[crowdsec] {what} {path} is {problem}".replace(" is it is ", " is "), title="CrowdSec")
        with os.fdopen(os.dup(fd), "rb") as f:
            raw = f.read(limit + 1)
    finally:
        os.close(fd)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"[crowdsec] {what} {path} is not UTF-8 text", title="CrowdSec") from exc


def bouncer_key(settings: CrowdSecSettings) -> str:
    if settings.api_key:
        return settings.api_key
    assert settings.api_key_file is not None
    key = read_secret(settings.api_key_file, "api_key_file").strip()
    if not key or len(key) > 256 or not key.isascii() or not key.isprintable() or " " in key:
        raise ConfigError(f"[crowdsec] api_key_file {settings.api_key_file} holds no bouncer key", title="CrowdSec")
    return key


def machine_credentials(settings: CrowdSecSettings) -> tuple[str, str]:
    """(login, password) from the file `cscli machines add -f` writes (YAML: url, login, password)."""
    path = settings.machine_credentials_file
    assert path is not None
    try:
        data = yaml.safe_load(read_secret(path, "machine_credentials_file"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"[crowdsec] machine_credentials_file {path} is not YAML", title="CrowdSec") from exc
    login = data.get("login") if isinstance(data, dict) else None
    password = data.get("password") if isinstance(data, dict) else None
    if not isinstance(login, str) or not isinstance(password, str) or not login or not password:
        raise ConfigError(f"[crowdsec] machine_credentials_file {path} has no login and password", title="CrowdSec")
    return login, password


def utf8_text(chunks: list[bytes]) -> str:
    """The text of a body read as ``chunks``, decoded a chunk at a time and each freed once decoded (the list is
    emptied): at most two copies at once, and no C call of the whole body holding the interpreter.  A 13 MB
    stream joined, then decoded, held it 17 ms (session 28), with the engine's tick waiting behind.
    UnicodeDecodeError (a ValueError) for a body that is not UTF-8."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    parts = []
    for i, chunk in enumerate(chunks):
        parts.append(decoder.decode(chunk))
        chunks[i] = b""
    parts.append(decoder.decode(b"", final=True))
    chunks.clear()
    return "".join(parts)


class LapiClient:
    """One httpx client to one LAPI."""

    def __init__(self, settings: CrowdSecSettings, key: str) -> None:
        verify: Any = True
        if settings.ca_file is not None:
            # Checked as the credentials are (a CA others can write lets them be the LAPI), then loaded
            # from the text read, not from the path again.
            pem = read_secret(settings.ca_file, "ca_file", secret=False, limit=MAX_CA_FILE)
            try:
                verify = ssl.create_default_context(cadata=pem)
            except (ssl.SSLError, ValueError) as exc:
                raise ConfigError(
                    f"[crowdsec] ca_file {settings.ca_file} holds no usable CA: {exc}", title="CrowdSec"
                ) from exc
        self._http = httpx.Client(
            base_url=settings.url,
            timeout=httpx.Timeout(settings.timeout),
            verify=verify,
            headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
            follow_redirects=False,
            # Not the environment's HTTP_PROXY, SSL_CERT_FILE or netrc: a proxy there would receive the bouncer's
            # key over http to 127.0.0.1 (which lapi_url allows in clear only because it never leaves the host).
            trust_env=False,
            # A connection per call, so that its deadline (CallDeadline) sees the connection made for it.
            limits=httpx.Limits(max_keepalive_connections=0),
        )
        self._key = key
        self._token: str | None = None

    def close(self) -> None:
        self._http.close()

    def _read(self, what: str, method: str, path: str, limit: int, deadline: float, **kw: Any) -> list[bytes]:
        """The body of one call's answer, as the chunks read (200 or 201; else LapiError with the status), whole within
        ``deadline`` seconds and ``limit`` bytes: the per-read timeout alone lets a LAPI, or what poses as one,
        drip its TLS handshake, headers or body for ever, or send gigabytes."""
        with CallDeadline(deadline) as d:
            try:
                return self._body(what, method, path, limit, d, **kw)
            except httpx.HTTPError as exc:
                if d.expired:  # ended by the deadline: what the read saw then is not the cause
                    raise LapiError(f"{what}: not whole after {deadline:g} s") from exc
                raise LapiError(f"{what}: {type(exc).__name__}: {exc}") from exc

    def _body(self, what: str, method: str, path: str, limit: int, d: CallDeadline, **kw: Any) -> list[bytes]:
        """_read's call, its connection ended by ``d``."""
        with self._http.stream(method, path, extensions={"trace": d.trace}, **kw) as r:
            status, shown = r.status_code, r.request.url.path
            if status not in (200, 201):
                raise LapiError(f"{method} {shown}: HTTP {status}", status)  # the body unread
            try:
                size = int(r.headers.get("content-length") or 0)
            except ValueError:
                raise LapiError(f"{what}: a Content-Length that is not a number") from None
            if size > limit:
                raise LapiError(f"{what}: {size} bytes announced, more than {limit}")
            # Asked for none (identity): a compressed body would be inflated a chunk at a time, each
            # chunk unbounded, before its size could be counted.
            coding = r.headers.get("content-encoding", "identity").strip().lower()
            if coding != "identity":
                raise LapiError(f"{what}: a body in {coding[:32]!r}, which was not asked for")
            chunks: list[bytes] = []
            got = 0
            for chunk in r.iter_raw():
                got += len(chunk)
                if got > limit:
                    raise LapiError(f"{what}: more than {limit} bytes")
                chunks.append(chunk)
        # Also when the read ended quietly: a body with no length ends with its connection, which the
        # deadline shut down.
        if d.expired:
            raise LapiError(f"{what}: not whole after {d.seconds:g} s")
        return chunks

    def stream(self, startup: bool, element: stream_json.Element | None = None) -> Any:
        """``GET /v1/decisions/stream``: the JSON body (within STREAM_DEADLINE and MAX_BODY), its entries through
        ``element`` as they are decoded (stream_json)."""
        params = {"startup": "true" if startup else "false"}
        headers = {"X-Api-Key": self._key}
        chunks = self._read("decision stream", "GET", "v1/decisions/stream", MAX_BODY, STREAM_DEADLINE,
                            params=params, headers=headers)  # fmt: skip
        try:
            text = utf8_text(chunks)
            # 100,000 decisions: parsed element by element, yielding between them, not stalling the tick
            return stream_json.loads(text, element)
        except (ValueError, RecursionError) as exc:
            raise LapiError(f"decision stream: the body is not what it should be: {str(exc)[:200]}") from exc

    def _answer(self, what: str, path: str, **kw: Any) -> Any:
        """A small call's JSON answer (MAX_ANSWER, ANSWER_DEADLINE)."""
        raw = b"".join(self._read(what, "POST", path, MAX_ANSWER, ANSWER_DEADLINE, **kw))
        try:
            return json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise LapiError(f"{path}: the body is not JSON") from exc

    # --- the sensor ----------------------------------------------------------------
    def login(self, login: str, password: str) -> None:
        body = self._answer(
            "login", "v1/watchers/login", json={"machine_id": login, "password": password, "scenarios": []}
        )
        token = body.get("token") if isinstance(body, dict) else None
        if not isinstance(token, str):
            raise LapiError("login: no token in the answer")
        self._token = token

    @property
    def logged_in(self) -> bool:
        return self._token is not None

    def push_alerts(self, alerts: list[dict[str, Any]]) -> Any:
        """``POST /v1/alerts`` with the machine's JWT; a 401 forgets the token (log in again)."""
        try:
            return self._answer("alerts", "v1/alerts", json=alerts, headers={"Authorization": f"Bearer {self._token}"})
        except LapiError as exc:
            if exc.status == 401:
                self._token = None
            raise
