"""Exposing /metrics safely: the exporter-toolkit web config (TLS, basic auth
with bcrypt), its errors, and the endpoint behind it: a wrong password or
none gets 401, the right one 200, plain HTTP is refused when TLS is on.
The last tests run the real agent on a veth pair (root)."""

from __future__ import annotations

import os
import signal
import ssl
import textwrap
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
from support import netlab
from support.agents import AgentPool, one_error_line, pins, xdp_progs
from support.metrics_lab import (
    DEPLOY,
    AgentFiles,
    bcrypt_hash,
    client_context,
    fetch,
    free_port,
    port_closed,
    self_signed,
)

from ironpost_tui.engine.snapshot import EngineSnapshot
from ironpost_tui.errors import ExitStatus, WebConfigInvalid
from ironpost_tui.metrics import web_config
from ironpost_tui.metrics.collector import engine_registry
from ironpost_tui.metrics.server import MetricsServer

SNAP = EngineSnapshot(at=1.0, iface="eth0", mode="native", attached=True)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed(tmp_path_factory.mktemp("tls"))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "web.yml"
    path.write_text(textwrap.dedent(text))
    return path


def tls_and_auth(tmp_path: Path, tls_files: tuple[Path, Path], users: dict[str, str] | None = None) -> Path:
    cert, key = tls_files
    users = users if users is not None else {"prometheus": bcrypt_hash("s3cret")}
    lines = "".join(f"  {u}: {h}\n" for u, h in users.items())
    return write(tmp_path, f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\nbasic_auth_users:\n{lines}")


# --------------------------------------------------------------------------- #
# the file


def test_tls_and_users_load(tmp_path: Path, tls_files: tuple[Path, Path]) -> None:
    web = web_config.load(tls_and_auth(tmp_path, tls_files))
    assert isinstance(web.tls, ssl.SSLContext) and web.tls.minimum_version == ssl.TLSVersion.TLSv1_2
    assert set(web.users) == {"prometheus"}


def test_paths_are_relative_to_the_file(tmp_path: Path, tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    (tmp_path / "c.crt").write_bytes(cert.read_bytes())
    (tmp_path / "c.key").write_bytes(key.read_bytes())
    web = web_config.load(write(tmp_path, "tls_server_config:\n  cert_file: c.crt\n  key_file: c.key\n"))
    assert web.tls is not None and not web.users


@pytest.mark.parametrize("which", ["cert_file", "key_file", "client_ca_file"])
def test_tls_files_are_trusted_as_the_web_config_is(tmp_path: Path, tls_files: tuple[Path, Path], which: str) -> None:
    """A client CA others can write lets them mint client certificates; a certificate or key they can write lets
    them be the endpoint; a FIFO there would block the start.  Each is refused in one line, at once."""
    cert, key = tls_files
    files = {"cert_file": tmp_path / "c.crt", "key_file": tmp_path / "c.key", "client_ca_file": tmp_path / "ca.crt"}
    files["cert_file"].write_bytes(cert.read_bytes())
    files["key_file"].write_bytes(key.read_bytes())
    files["client_ca_file"].write_bytes(cert.read_bytes())
    conf = write(tmp_path, "tls_server_config:\n  cert_file: c.crt\n  key_file: c.key\n  client_ca_file: ca.crt\n"
                 "  client_auth_type: RequireAndVerifyClientCert\n")  # fmt: skip
    assert web_config.load(conf).tls is not None  # the control
    files[which].chmod(0o666)
    with pytest.raises(WebConfigInvalid, match=f"tls_server_config.{which} .*writable"):
        web_config.load(conf)
    files[which].unlink()
    os.mkfifo(files[which])
    with pytest.raises(WebConfigInvalid, match=f"tls_server_config.{which} .*not a regular file"):
        web_config.load(conf)


def test_a_go_style_2y_hash_from_htpasswd_works() -> None:
    hashed = bcrypt_hash("pw").replace("$2b$", "$2y$", 1)
    auth = web_config.parse({"basic_auth_users": {"u": hashed}}, Path("web.yml")).basic_auth()
    assert auth is not None and auth.check("u", "pw") and not auth.check("u", "wrong")


BAD = {
    "yaml": ("tls_server_config: [unclosed\n", "YAML syntax error at line"),
    "not a mapping": ("- a\n- b\n", "must be a mapping"),
    "unknown key": ("tls_config: 1\n", "unknown key 'tls_config'"),
    "rate limit": ("rate_limit:\n  interval: 1s\n  burst: 2\n", "rate_limit is not supported"),
    "no key file": ("tls_server_config:\n  cert_file: {cert}\n", "needs both cert_file and key_file"),
    "missing cert": ("tls_server_config:\n  cert_file: /nonexistent.crt\n  key_file: {key}\n", "no such file"),
    "key is the cert": ("tls_server_config:\n  cert_file: {cert}\n  key_file: {cert}\n", "cannot use"),
    "inline cert": ("tls_server_config:\n  cert: abc\n", "tls_server_config.cert is not supported"),
    "cipher suites": (
        "tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  cipher_suites: [x]\n",
        "cipher_suites is not supported",
    ),
    "bad version": (
        "tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  min_version: TLS99\n",
        "min_version 'TLS99'",
    ),
    "mtls without ca": (
        "tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  client_auth_type: RequireAndVerifyClientCert\n",
        "needs client_ca_file",
    ),
    "insecure client auth": (
        "tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  client_auth_type: RequireAnyClientCert\n",
        "is not supported",
    ),
    "plain password": ("basic_auth_users:\n  alice: hunter2\n", "not a bcrypt hash"),
    "user with colon": ("basic_auth_users:\n  'a:b': x\n", "user name"),
    # $2b$99$ has the shape of a bcrypt hash; bcrypt itself raises on it at the first check
    "bcrypt cost 99": ("basic_auth_users:\n  alice: '$2b$99$" + "a" * 53 + "'\n", "bcrypt cost 99 is outside 4..31"),
    "bcrypt cost 3": ("basic_auth_users:\n  alice: '$2b$03$" + "a" * 53 + "'\n", "bcrypt cost 3 is outside 4..31"),
    "bad header": ("http_server_config:\n  headers:\n    X-Evil: 1\n", "is not one of"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_file_is_one_line_naming_the_file_and_the_key(
    case: str, tmp_path: Path, tls_files: tuple[Path, Path]
) -> None:
    text, expected = BAD[case]
    cert, key = tls_files
    path = write(tmp_path, text.format(cert=cert, key=key))
    with pytest.raises(WebConfigInvalid) as err:
        web_config.load(path)
    message = err.value.message
    assert expected in message, message
    assert message.startswith(f"web config {path}: ") and "\n" not in message
    assert err.value.exit_status == ExitStatus.CONFIG_INVALID == 2


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(WebConfigInvalid, match="cannot read it"):
        web_config.load(tmp_path / "nope.yml")


def test_the_shipped_example_is_refused_until_its_hash_is_replaced(
    tmp_path: Path, tls_files: tuple[Path, Path]
) -> None:
    example = (DEPLOY / "web-config.example.yml").read_text()
    cert, key = tls_files
    text = example.replace("/etc/ironpost/tls/agent.crt", str(cert)).replace("/etc/ironpost/tls/agent.key", str(key))
    with pytest.raises(WebConfigInvalid, match="basic_auth_users.prometheus is not a bcrypt hash"):
        web_config.load(write(tmp_path, text))
    fixed = text.replace('"<the bcrypt hash of the scrape password>"', bcrypt_hash("pw"))
    web = web_config.load(write(tmp_path, fixed))
    assert web.tls is not None and set(web.users) == {"prometheus"}


def test_unknown_users_cost_a_bcrypt_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """BasicAuth always runs bcrypt, for unknown users too; remembering successes is the login
    guard's job (tests/test_metrics_limits.py)."""
    auth = web_config.BasicAuth({"alice": bcrypt_hash("pw").encode(), "bob": bcrypt_hash("pw2").encode()})
    calls: list[bytes] = []
    real = bcrypt.checkpw

    def counting(password: bytes, hashed: bytes) -> bool:
        calls.append(hashed)
        return real(password, hashed)

    monkeypatch.setattr(web_config.bcrypt, "checkpw", counting)
    assert not auth.check("mallory", "pw")
    assert len(calls) == 1  # against the dummy hash: as slow as a real user
    assert not auth.check("alice", "wrong") and len(calls) == 2
    assert auth.check("alice", "pw") and len(calls) == 3
    assert not auth.check("alice", "pw ") and len(calls) == 4
    assert not auth.check("alice", "x" * 100)  # past bcrypt's 72 bytes: refused, not an error


# --------------------------------------------------------------------------- #
# the endpoint behind it


@pytest.fixture
def secured(tmp_path: Path, tls_files: tuple[Path, Path]) -> Iterator[MetricsServer]:
    web = web_config.load(tls_and_auth(tmp_path, tls_files))
    srv = MetricsServer("127.0.0.1", 0, engine_registry(lambda: SNAP), lambda: None, web)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def check_secured(port: int, cafile: Path) -> None:
    """401 without or with wrong credentials, 200 with the right ones, plain HTTP refused."""
    ctx = client_context(cafile)
    url = f"https://127.0.0.1:{port}/metrics"
    status, headers, body = fetch(url, context=ctx)
    assert status == 401 and headers["WWW-Authenticate"] == 'Basic realm="ironpost"'
    assert b"ironpost_" not in body
    assert fetch(url, context=ctx, auth=("prometheus", "wrong"))[0] == 401
    assert fetch(url, context=ctx, auth=("nobody", "s3cret"))[0] == 401
    status, _, body = fetch(url, context=ctx, auth=("prometheus", "s3cret"))
    assert status == 200 and b"ironpost_build_info" in body
    assert fetch(f"https://127.0.0.1:{port}/healthz", context=ctx)[0] == 401  # everything is behind auth
    assert fetch(f"https://127.0.0.1:{port}/healthz", context=ctx, auth=("prometheus", "s3cret"))[0] == 200
    status, _, body = fetch(f"http://127.0.0.1:{port}/metrics", auth=("prometheus", "s3cret"))
    assert status == 400 and b"HTTP request to an HTTPS server" in body and b"ironpost_" not in body
    # A client that does not trust the certificate does not get in either.
    with pytest.raises(OSError):
        fetch(url, context=ssl.create_default_context(), auth=("prometheus", "s3cret"))


def test_tls_and_basic_auth(secured: MetricsServer, tls_files: tuple[Path, Path]) -> None:
    check_secured(secured.port, tls_files[0])


def test_headers_from_http_server_config(tmp_path: Path) -> None:
    path = write(tmp_path, "http_server_config:\n  headers:\n    X-Frame-Options: deny\n  http2: true\n")
    srv = MetricsServer("127.0.0.1", 0, engine_registry(lambda: SNAP), lambda: None, web_config.load(path))
    srv.start()
    try:
        assert fetch(f"http://127.0.0.1:{srv.port}/metrics")[1]["X-Frame-Options"] == "deny"
    finally:
        srv.stop()


def test_client_certificates_when_required(tmp_path: Path, tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    (tmp_path / "client").mkdir()
    client_cert, client_key = self_signed(tmp_path / "client", cn="prometheus")
    path = write(
        tmp_path,
        f"""\
        tls_server_config:
          cert_file: {cert}
          key_file: {key}
          client_auth_type: RequireAndVerifyClientCert
          client_ca_file: {client_cert}
        """,
    )
    srv = MetricsServer("127.0.0.1", 0, engine_registry(lambda: SNAP), lambda: None, web_config.load(path))
    srv.start()
    try:
        url = f"https://127.0.0.1:{srv.port}/healthz"
        with pytest.raises(OSError):
            fetch(url, context=client_context(cert))
        with_cert = client_context(cert)
        with_cert.load_cert_chain(client_cert, client_key)
        assert fetch(url, context=with_cert)[0] == 200
    finally:
        srv.stop()


# --------------------------------------------------------------------------- #
# the real agent


@pytest.mark.root
def test_the_agent_serves_tls_and_basic_auth(
    lab: netlab.Lab, agents: AgentPool, tmp_path: Path, tls_files: tuple[Path, Path]
) -> None:
    files = AgentFiles.make(tmp_path)
    port = free_port()
    web = tls_and_auth(tmp_path, tls_files)
    agent = agents.start(lab.host_if, *files.args(), "--metrics-port", str(port), "--web-config", str(web))
    agent.wait_ready()
    line = agent.wait_for("metrics on ")
    assert f"https://127.0.0.1:{port}/metrics" in line and "TLS" in line and "basic auth (1 user)" in line
    check_secured(port, tls_files[0])
    agent.send(signal.SIGTERM)
    assert agent.wait() == 0, agent.describe()
    assert port_closed(port)


@pytest.mark.root
def test_a_bad_web_config_exits_2_before_anything_is_attached(
    lab: netlab.Lab, agents: AgentPool, tmp_path: Path
) -> None:
    files = AgentFiles.make(tmp_path)
    port = free_port()
    bad = write(tmp_path, "basic_auth_users:\n  alice: hunter2\n")
    proc = agents.run(lab.host_if, *files.args(), "--metrics-port", str(port), "--web-config", str(bad))
    assert proc.returncode == 2, proc
    msg = one_error_line(proc.stderr)
    assert str(bad) in msg and "bcrypt" in msg
    assert "ready:" not in proc.stdout
    assert xdp_progs(lab.ifindex) == [] and pins(lab.host_if) == []
    assert port_closed(port)
    # The same file named in [metrics] web_config, relative to the configuration.
    files.config.write_text(f'[metrics]\nweb_config = "web.yml"\nport = {port}\n')
    agents.pick_metrics_port = False  # the file decides
    proc = agents.run(lab.host_if, *files.args())
    assert proc.returncode == 2, proc
    assert str(bad) in one_error_line(proc.stderr)
    assert xdp_progs(lab.ifindex) == []


def test_a_web_configuration_others_can_write_is_refused(tmp_path: Path) -> None:
    """Whoever can write it decides who reads /metrics: the same rule as the configuration's."""
    path = write(tmp_path, "basic_auth_users: {}\n")
    web_config.load(path)  # the control: 0644 in a private directory
    path.chmod(0o666)
    with pytest.raises(WebConfigInvalid, match="writable by its group or by others.*chmod go-w"):
        web_config.load(path)


def test_a_fifo_in_place_of_the_web_configuration_does_not_block(tmp_path: Path) -> None:
    fifo = tmp_path / "web.yml"
    os.mkfifo(fifo, 0o600)  # a blocking open would wait for a writer forever
    with pytest.raises(WebConfigInvalid, match="not a regular file: give the path of a YAML file"):
        web_config.load(fifo)


def test_a_huge_web_configuration_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "# " + "x" * web_config.MAX_WEB_CONFIG_BYTES + "\n")
    with pytest.raises(WebConfigInvalid, match="larger than 1024 KiB"):
        web_config.load(path)
