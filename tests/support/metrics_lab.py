"""Helpers of the metrics tests: free ports, an agent's files in tmp_path,
scraping, TLS material, and a real Prometheus server.

    port = free_port()
    files = AgentFiles.make(tmp_path, rules=MONITOR_UDP_9)
    agent = agents.start(lab.host_if, *files.args(), "--metrics-port", str(port))
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .common import REPO

DEPLOY = REPO / "deploy"

MONITOR_UDP_9 = """
[[ebpf.rules]]
id = "watch-discard"
dst_port = 9
protocol = 17
action = "monitor"
"""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_closed(port: int, host: str = "127.0.0.1") -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


@dataclass(frozen=True)
class AgentFiles:
    """Config, state dir and audit log of one agent, all in tmp_path."""

    config: Path
    state_dir: Path
    audit_log: Path

    @classmethod
    def make(cls, tmp_path: Path, rules: str = "", extra: str = "") -> AgentFiles:
        config = tmp_path / "ironpost.toml"
        config.write_text(extra + "\n" + rules)
        state = tmp_path / "state"
        state.mkdir(exist_ok=True)
        return cls(config, state, tmp_path / "audit.log")

    def args(self) -> list[str]:
        return ["--config", str(self.config), "--state-dir", str(self.state_dir), "--audit-log", str(self.audit_log)]


def fetch(
    url: str,
    *,
    auth: tuple[str, str] | None = None,
    context: ssl.SSLContext | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of a GET; HTTP errors are answers, not exceptions."""
    req = urllib.request.Request(url, headers=headers or {})
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def basic(user: str, password: str) -> str:
    """An ``Authorization`` value for basic auth."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class RawClient:
    """One TCP connection to the endpoint, from ``source`` (every 127.0.0.0/8 address is this host's
    own, so loopback gives a test as many distinct sources as it needs).  Bytes go out as they
    are; responses are read, one after another on the same connection, by http.client's parser.

        with RawClient(port, "127.0.0.2") as c:
            c.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            status, headers, body = c.response()
    """

    def __init__(self, port: int, source: str = "127.0.0.1", host: str = "127.0.0.1", timeout: float = 5.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout, source_address=(source, 0))
        self._rfile = self.sock.makefile("rb")

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._rfile.close()
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def makefile(self, mode: str) -> Any:  # what http.client.HTTPResponse reads through
        return _KeepOpen(self._rfile)

    def response(self, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
        """(status, headers with lower-case names, body) of the next response."""
        import http.client

        resp = http.client.HTTPResponse(self, method=method)  # type: ignore[arg-type]
        resp.begin()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()

    def closed_by_peer(self, within: float) -> bool:
        """Whether the other side closes the connection (end of stream or reset) within ``within``
        seconds; whatever it sends before is read and dropped."""
        end = time.monotonic() + within
        try:
            while (left := end - time.monotonic()) > 0:
                self.sock.settimeout(left)
                if not self._rfile.read1(65536):
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False
        return False


class _KeepOpen:
    """A file http.client may "close" after each response without closing the connection."""

    def __init__(self, f: Any) -> None:
        self._f = f

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)

    def close(self) -> None:
        pass


def request(port: int, data: bytes, source: str = "127.0.0.1", method: str = "GET",
            timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
    """Send ``data`` as it is on a new connection and read one response."""
    with RawClient(port, source, timeout=timeout) as client:
        client.send(data)
        return client.response(method)


def scrape(port: int, host: str = "127.0.0.1") -> str:
    status, _, body = fetch(f"http://{host}:{port}/metrics")
    assert status == 200, (status, body)
    return body.decode()


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in a text exposition (prometheus_client's parser)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


def wait_until(what: str, check: Any, timeout: float = 30.0, every: float = 0.25) -> Any:
    """Poll ``check()`` until it returns something truthy; AssertionError naming ``what`` otherwise."""
    end = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < end:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout} s (last: {last!r})")


# --------------------------------------------------------------------------- #
# TLS and basic auth material


def self_signed(tmp_path: Path, cn: str = "localhost") -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, made with the openssl CLI."""
    cert, key = tmp_path / "agent.crt", tmp_path / "agent.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-days", "2", "-subj", f"/CN={cn}", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def bcrypt_hash(password: str, rounds: int = 4) -> str:
    import bcrypt

    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=rounds)).decode()


def client_context(cafile: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cafile))


# --------------------------------------------------------------------------- #
# a real Prometheus


class Prometheus:
    """The distribution's ``prometheus`` on 127.0.0.1, with a config and TSDB in ``workdir``."""

    def __init__(self, workdir: Path, targets: Sequence[str], rule_files: Sequence[Path] = (),
                 extra_scrape: dict[str, Any] | None = None) -> None:  # fmt: skip
        self.port = free_port()
        self.workdir = workdir
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": [
                {"job_name": "ironpost", "static_configs": [{"targets": list(targets)}], **(extra_scrape or {})}
            ],  # fmt: skip
        }
        self.config = workdir / "prometheus.yml"
        self.config.write_text(json.dumps(config, indent=2))  # JSON is YAML
        self.log = workdir / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Prometheus:
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                ["prometheus", f"--config.file={self.config}", f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        wait_until("prometheus ready", self._ready, timeout=60)
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited {self.proc.returncode}:\n{self.log.read_text()}")
        try:
            return fetch(f"http://127.0.0.1:{self.port}/-/ready", timeout=1)[0] == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def api(self, path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        status, _, body = fetch(url)
        data = json.loads(body)
        assert status == 200 and data.get("status") == "success", (status, data)
        return data["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.api("query", query=promql)["result"]
        return result

    def value(self, promql: str) -> float | None:
        """The value of a query with one result, None with none."""
        result = self.query(promql)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None


@contextlib.contextmanager
def prometheus(workdir: Path, targets: Sequence[str], rule_files: Sequence[Path] = (),
               extra_scrape: dict[str, Any] | None = None) -> Iterator[Prometheus]:  # fmt: skip
    """A running Prometheus, killed at the end, also when the test fails (``extra_scrape``: more
    keys of the scrape config, e.g. ``basic_auth``)."""
    prom = Prometheus(workdir, targets, rule_files, extra_scrape)
    try:
        yield prom.start()
    finally:
        prom.stop()
