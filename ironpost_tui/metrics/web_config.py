"""The metrics endpoint's web configuration: TLS and basic auth, in the file
format of Prometheus' exporter-toolkit (``--web.config.file``), so one file
serves node_exporter and ironpost alike.

Supported: ``tls_server_config`` (cert_file, key_file, client_ca_file,
client_auth_type, min_version, max_version), ``http_server_config``
(headers; http2 is accepted and ignored) and ``basic_auth_users`` (bcrypt
hashes).  Everything else the toolkit knows is refused by name rather than
ignored: a setting that silently does nothing is worse than an error.  Paths
are relative to the file's directory, as in the toolkit.  The file is read
once, at start: restart to rotate certificates.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import re
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt

from ironpost_tui import trust
from ironpost_tui.errors import WebConfigInvalid

MAX_WEB_CONFIG_BYTES = 1024 * 1024  # a web configuration is a few lines
TLS_KEYS = ("cert_file", "key_file", "client_ca_file", "client_auth_type", "min_version", "max_version")
TLS_UNSUPPORTED = ("cert", "key", "client_ca", "client_allowed_sans", "cipher_suites",
                   "prefer_server_cipher_suites", "curve_preferences")  # fmt: skip
HEADERS = ("Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options", "X-XSS-Protection",
           "Strict-Transport-Security")  # fmt: skip
TLS_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
                "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}  # fmt: skip
CLIENT_AUTH = {"NoClientCert": ssl.CERT_NONE, "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
               "RequireAndVerifyClientCert": ssl.CERT_REQUIRED}  # fmt: skip
BCRYPT_HASH = re.compile(r"^\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}$")


@dataclass(frozen=True)
class WebConfig:
    path: Path | None = None
    tls: ssl.SSLContext | None = None
    users: dict[str, bytes] = field(default_factory=dict)  # user -> bcrypt hash
    headers: dict[str, str] = field(default_factory=dict)

    def basic_auth(self) -> BasicAuth | None:
        """A checker for ``users`` (None without users); making one costs a bcrypt hash."""
        return BasicAuth(self.users) if self.users else None


class BasicAuth:
    """Checks user and password against bcrypt hashes, every time (``http.login_guard`` limits
    failures per source and remembers recent successes in front of it).

    Every lookup walks all users with a constant-time comparison and runs bcrypt even for an
    unknown user (against a dummy hash of the same cost), so the response time tells nothing
    about which users exist.
    """

    def __init__(self, users: dict[str, bytes]) -> None:
        self._users = [(u.encode("utf-8"), h) for u, h in users.items()]
        m = BCRYPT_HASH.match(self._users[0][1].decode("ascii")) if self._users else None
        rounds = int(m.group(1)) if m else 10
        self._dummy = bcrypt.hashpw(b"ironpost: no such user", bcrypt.gensalt(rounds=rounds))

    def check(self, user: str, password: str) -> bool:
        name = user.encode("utf-8", "surrogateescape")
        secret = password.encode("utf-8", "surrogateescape")
        hashed = None
        for candidate, h in self._users:
            if hmac.compare_digest(candidate, name):
                hashed = h
        try:
            ok = bcrypt.checkpw(secret, hashed or self._dummy)
        except ValueError:  # longer than bcrypt's 72 bytes
            ok = False
        return ok and hashed is not None


def load(path: Path) -> WebConfig:
    """Read and check ``path``; WebConfigInvalid (one line: file, key, what to do) otherwise."""
    import yaml

    try:
        # As the configuration: never blocks on a FIFO, and only root may write what decides who reads /metrics.
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            problem = trust.file_problem(os.fstat(fd), path, "YAML")
            if problem is not None:
                raise _bad(path, problem)
            with os.fdopen(os.dup(fd), "rb") as f:
                raw = f.read(MAX_WEB_CONFIG_BYTES + 1)
        finally:
            os.close(fd)
        if len(raw) > MAX_WEB_CONFIG_BYTES:
            raise _bad(path, f"larger than {MAX_WEB_CONFIG_BYTES // 1024} KiB: not a web configuration")
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _bad(path, f"cannot read it: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = getattr(exc, "problem", None) or "not valid YAML"
        raise _bad(path, f"YAML syntax error{where}: {what}") from None
    return parse(data or {}, path)


def parse(data: Any, path: Path) -> WebConfig:
    """Check the already-parsed YAML ``data`` of ``path``."""
    _mapping(data, path, "the file")
    unsupported = {"rate_limit"}
    for key in data:
        if key in unsupported:
            raise _bad(path, f"{key} is not supported by ironpost-tui: remove it (or put a reverse proxy in front)")
        if key not in ("tls_server_config", "http_server_config", "basic_auth_users"):
            raise _bad(path, f"unknown key {key!r}: use tls_server_config, http_server_config, basic_auth_users")
    tls = _tls(data.get("tls_server_config"), path)
    headers = _headers(data.get("http_server_config"), path)
    users = _users(data.get("basic_auth_users"), path)
    return WebConfig(path=path, tls=tls, users=users, headers=headers)


def _bad(path: Path, message: str) -> WebConfigInvalid:
    return WebConfigInvalid(f"web config {path}: {message}")


def _mapping(value: Any, path: Path, what: str) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise _bad(path, f"{what} must be a mapping of keys to values, got {type(value).__name__}")
    return value


def _string(table: dict[Any, Any], key: str, path: Path, where: str) -> str | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise _bad(path, f"{where}.{key} must be a non-empty string")
    return value


def _tls(value: Any, path: Path) -> ssl.SSLContext | None:
    if value is None:
        return None
    t = _mapping(value, path, "tls_server_config")
    where = "tls_server_config"
    for key in t:
        if key in TLS_UNSUPPORTED:
            raise _bad(path, f"{where}.{key} is not supported by ironpost-tui: remove it")
        if key not in TLS_KEYS:
            raise _bad(path, f"unknown key {where}.{key}: the keys are {', '.join(TLS_KEYS)}")
    base = path.parent
    cert, key = _string(t, "cert_file", path, where), _string(t, "key_file", path, where)
    if not cert or not key:
        raise _bad(path, f"{where} needs both cert_file and key_file")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    for name, default, attr in (
        ("min_version", "TLS12", "minimum_version"),
        ("max_version", "TLS13", "maximum_version"),
    ):
        version = _string(t, name, path, where) or default
        if version not in TLS_VERSIONS:
            raise _bad(path, f"{where}.{name} {version!r} is not one of {', '.join(TLS_VERSIONS)}")
        setattr(ctx, attr, TLS_VERSIONS[version])
    cert_path, key_path = base / cert, base / key
    with (
        _trusted(cert_path, path, f"{where}.cert_file") as cert_fd,
        _trusted(key_path, path, f"{where}.key_file") as key_fd,
    ):
        try:
            # Through the descriptors checked, not the paths again: what is loaded is what was judged.
            ctx.load_cert_chain(f"/proc/self/fd/{cert_fd}", f"/proc/self/fd/{key_fd}")
        except OSError as exc:  # ssl.SSLError included
            reason = getattr(exc, "reason", None) or exc.strerror or str(exc)
            raise _bad(path, f"{where}: cannot use {cert_path} with {key_path}: {reason}") from None
    auth_type = _string(t, "client_auth_type", path, where) or "NoClientCert"
    if auth_type not in CLIENT_AUTH:
        raise _bad(path, f"{where}.client_auth_type {auth_type!r} is not supported: use {', '.join(CLIENT_AUTH)}")
    ca = _string(t, "client_ca_file", path, where)
    if CLIENT_AUTH[auth_type] != ssl.CERT_NONE:
        if ca is None:
            raise _bad(path, f"{where}.client_auth_type {auth_type} needs client_ca_file")
        with _trusted(base / ca, path, f"{where}.client_ca_file") as ca_fd:
            try:
                ctx.load_verify_locations(cafile=f"/proc/self/fd/{ca_fd}")
            except OSError as exc:
                raise _bad(path, f"{where}: cannot use client_ca_file {base / ca}: {exc.strerror or exc}") from None
        ctx.verify_mode = CLIENT_AUTH[auth_type]
    elif ca is not None:
        raise _bad(path, f"{where}.client_ca_file is set but client_auth_type is NoClientCert: set one of "
                   "RequireAndVerifyClientCert or VerifyClientCertIfGiven")  # fmt: skip
    return ctx


@contextlib.contextmanager
def _trusted(file: Path, path: Path, what: str) -> Iterator[int]:
    """``file`` open, if it may be trusted as the web configuration itself is (trust.file_problem: a regular file
    that only root may write, in a directory only root may write): a CA file others can write lets them mint
    client certificates; a FIFO there would block the start."""
    try:
        fd = os.open(file, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        raise _bad(path, f"{what}: cannot read {file}: no such file") from None
    except OSError as exc:
        raise _bad(path, f"{what}: cannot read {file}: {exc.strerror or exc}") from None
    try:
        problem = trust.file_problem(os.fstat(fd), file, "PEM")
        if problem is not None:
            raise _bad(path, f"{what} {file}: {problem}")
        yield fd
    finally:
        os.close(fd)


def _headers(value: Any, path: Path) -> dict[str, str]:
    if value is None:
        return {}
    t = _mapping(value, path, "http_server_config")
    for key in t:
        if key not in ("headers", "http2"):
            raise _bad(path, f"unknown key http_server_config.{key}: the keys are headers, http2")
    raw = t.get("headers") or {}
    headers = _mapping(raw, path, "http_server_config.headers")
    out = {}
    for name, text in headers.items():
        if name not in HEADERS:
            raise _bad(path, f"http_server_config.headers.{name} is not one of {', '.join(HEADERS)}")
        if not isinstance(text, str) or "\n" in text or "\r" in text:
            raise _bad(path, f"http_server_config.headers.{name} must be a one-line string")
        if text:
            out[str(name)] = text
    return out


def _users(value: Any, path: Path) -> dict[str, bytes]:
    if value is None:
        return {}
    t = _mapping(value, path, "basic_auth_users")
    users = {}
    for user, hashed in t.items():
        if not isinstance(user, str) or not user or ":" in user:
            raise _bad(path, f"basic_auth_users: {user!r} is not a user name (a non-empty string without ':')")
        shape = BCRYPT_HASH.match(hashed) if isinstance(hashed, str) else None
        if shape is None:
            raise _bad(
                path,
                f"basic_auth_users.{user} is not a bcrypt hash: make one with "
                "`htpasswd -nBC 10 \"\" | tr -d ':\\n'` (the password itself never goes in the file)",
            )
        cost = int(shape.group(1))
        if not 4 <= cost <= 31:
            raise _bad(path, f"basic_auth_users.{user}: bcrypt cost {cost} is outside 4..31 (10 is usual)")
        users[user] = hashed.encode("ascii")
    return users
