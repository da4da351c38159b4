"""Anti-lockout against a real sshd and a real ssh client: the operator is found, bots are not protected.

Each test runs the distribution's sshd (openssh-server) on the host side of a
netlab veth pair (``ListenAddress`` the lab's host address, port 2222, its own
configuration, host key and authorized key in a temporary directory, ``UsePAM
yes``) and ssh clients inside the lab's namespace.  The namespace gets three
more addresses of a free /29 in 198.18.0.0/15: the operator's client A, the
other address B of A's /31, and a bot C.  ironpost-tui is started the real way,
over SSH (as root, under sudo, inside tmux) or from the host, and finds the
SSH sessions itself, from /proc.

Everything started here (sshd and every process of its connections, ssh
clients, tmux servers, the test user and its sudoers file, the lab) is removed
at the end, also when a test fails.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support import netlab
from support.agents import IRONPOST, AgentPool, cleanup, xdp_progs

from ironpost_tui.rules import ssh_sessions

pytestmark = pytest.mark.root

SSHD = Path("/usr/sbin/sshd")
PORT = 2222
NO_CLIENT = "no SSH client found: your own address is not protected; add it to [safety] protect"
YOURS = "(your SSH client address)"
ANOTHER = "(the client of another authenticated SSH session)"


# --------------------------------------------------------------------------- #
# processes


def _ppid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    parsed = ssh_sessions.parse_stat(stat)
    return parsed[1] if parsed else None


def descendants(root: int) -> list[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            ppid = _ppid(int(entry.name))
            if ppid is not None:
                parents[int(entry.name)] = ppid
    out = []
    for pid in parents:
        p, depth = pid, 0
        while p in parents and depth < 256:
            p, depth = parents[p], depth + 1
            if p == root:
                out.append(pid)
                break
    return out


def pids_where(test: str) -> list[int]:
    """Processes whose command line contains ``test``."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if test.encode() in (entry / "cmdline").read_bytes():
                    out.append(int(entry.name))
            except OSError:
                continue
    return out


def kill_pids(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def comm(pid: int) -> str:
    """The process's name; "" once it has gone (a short-lived child listed a moment before)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except (FileNotFoundError, ProcessLookupError):
        return ""


# --------------------------------------------------------------------------- #
# the lab: three more namespace addresses


@dataclass
class Addrs:
    client: str  # A, the operator's ssh client
    neighbour: str  # B, the other address of A's /31
    bot: str  # C, a pre-auth connection


def free_net29(lab: netlab.Lab) -> ipaddress.IPv4Network:
    out = subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, text=True, check=True).stdout
    used = [ipaddress.ip_network(a["local"]) for link in json.loads(out) for a in link.get("addr_info", [])]
    base = int(ipaddress.IPv4Address("198.18.0.0"))
    for _ in range(1000):
        net = ipaddress.IPv4Network((base + 8 * secrets.randbelow(2**17 // 8), 29))
        if not any(net.overlaps(u) for u in used) and not net.overlaps(ipaddress.ip_network(lab.net4)):
            return net
    raise AssertionError("no free /29 in 198.18.0.0/15")


def add_addresses(lab: netlab.Lab) -> Addrs:
    """A, B, C on the namespace's side; routes and static neighbours to them in the lab's table (they go
    with the lab's veth and table)."""
    net = free_net29(lab)
    addrs = Addrs(str(net[2]), str(net[3]), str(net[4]))
    assert ipaddress.ip_network(f"{addrs.client}/31", strict=False) == ipaddress.ip_network(f"{addrs.client}/31")
    for a in (addrs.client, addrs.neighbour, addrs.bot):
        assert netlab.allowed_address(a)
        subprocess.run(["ip", "-n", lab.ns, "addr", "add", f"{a}/32", "dev", lab.peer_if], check=True)
        subprocess.run(["ip", "neigh", "replace", a, "lladdr", lab.peer_mac, "dev", lab.host_if, "nud", "permanent"],
                       check=True)  # fmt: skip
    subprocess.run(["ip", "route", "add", str(net), "dev", lab.host_if, "src", lab.host_ip4, "table", str(lab.table)],
                   check=True)  # fmt: skip
    return addrs


# --------------------------------------------------------------------------- #
# sshd and ssh


@dataclass
class Sshd:
    lab: netlab.Lab
    addrs: Addrs
    dir: Path
    key: Path
    proc: subprocess.Popen[bytes]
    masters: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def ssh(self, user: str, *opts: str, src: str | None = None) -> list[str]:
        """The ssh command line, run in the lab's namespace, from ``src`` (A by default)."""
        return [
            "ip", "netns", "exec", self.lab.ns, "ssh", "-F", "/dev/null", "-p", str(PORT), "-i", str(self.key),
            "-b", src or self.addrs.client, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR", *opts,
            f"{user}@{self.lab.host_ip4}",
        ]  # fmt: skip

    def login(self, user: str) -> Login:
        """A master connection from A that stays open; commands go over it (ssh -S)."""
        ctl = self.dir / f"ctl-{secrets.token_hex(3)}"
        master = subprocess.Popen(
            self.ssh(user, "-M", "-S", str(ctl), "-N", "-o", "ControlPersist=no"),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        self.masters.append(master)
        login = Login(self, user, ctl, master)
        end = time.monotonic() + 20
        while login.run("true", timeout=10).returncode != 0:
            if master.poll() is not None or time.monotonic() > end:
                err = master.stderr.read().decode() if master.stderr else ""
                raise AssertionError(f"ssh login as {user} failed: {err}\n{self.log()}")
            time.sleep(0.1)
        return login

    def log(self) -> str:
        return (self.dir / "sshd.log").read_text(errors="replace")


@dataclass
class Login:
    sshd: Sshd
    user: str
    ctl: Path
    master: subprocess.Popen[bytes]

    def argv(self, command: str, *opts: str) -> list[str]:
        return self.sshd.ssh(self.user, "-S", str(self.ctl), *opts) + [command]

    def run(self, command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(command), capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)  # fmt: skip

    def close(self) -> None:
        self.master.terminate()
        self.master.wait(10)


@contextlib.contextmanager
def running_sshd(lab: netlab.Lab, name: str = "sshd") -> Iterator[Sshd]:
    addrs = add_addresses(lab)
    d = Path(tempfile.mkdtemp(prefix="ironpost-sshd-"))
    made_run = not Path("/run/sshd").exists()
    proc: subprocess.Popen[bytes] | None = None
    sshd: Sshd | None = None
    try:
        d.chmod(0o755)  # the test user reads authorized_keys as itself
        for key in ("host_key", "client_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(d / key)], check=True)
        (d / "authorized_keys").write_text((d / "client_key.pub").read_text())
        (d / "authorized_keys").chmod(0o644)
        (d / "sshd_config").write_text(
            f"Port {PORT}\nListenAddress {lab.host_ip4}\nHostKey {d / 'host_key'}\n"
            f"AuthorizedKeysFile {d / 'authorized_keys'}\nPermitRootLogin prohibit-password\nStrictModes no\n"
            f"UsePAM yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPrintMotd no\n"
            f"PidFile {d / 'sshd.pid'}\n"
        )
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        binary = SSHD
        if name != "sshd":  # OpenSSH 9.8+ serves each connection in a process of this name
            (d / "bin").mkdir()
            binary = d / "bin" / name
            shutil.copy2(SSHD, binary)
        with (d / "sshd.log").open("wb") as log:
            proc = subprocess.Popen([str(binary), "-D", "-e", "-f", str(d / "sshd_config")], stderr=log,
                                    stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        end = time.monotonic() + 10
        while "Server listening" not in (d / "sshd.log").read_text(errors="replace"):
            assert proc.poll() is None and time.monotonic() < end, (d / "sshd.log").read_text(errors="replace")
            time.sleep(0.05)
        sshd = Sshd(lab, addrs, d, d / "client_key", proc)
        yield sshd
    finally:
        if proc is not None:
            family = descendants(proc.pid)
            proc.kill()
            kill_pids(family)
            proc.wait(10)
        for master in sshd.masters if sshd is not None else []:
            with contextlib.suppress(ProcessLookupError):
                master.kill()
            master.wait(10)
        kill_pids(pids_where(str(d)))  # tmux servers and anything else started with a path in here
        shutil.rmtree(d, ignore_errors=True)
        if made_run:
            with contextlib.suppress(OSError):
                Path("/run/sshd").rmdir()


@contextlib.contextmanager
def sudo_user() -> Iterator[str]:
    """A normal user with passwordless sudo; the user, its home and its sudoers file go afterwards."""
    name = f"ipt{secrets.token_hex(3)}"
    sudoers = Path(f"/etc/sudoers.d/ironpost-test-{name}")
    try:
        subprocess.run(["useradd", "-m", "-s", "/bin/bash", name], check=True)
        subprocess.run(["usermod", "-p", "*", name], check=True)  # unlocked for key login, no password
        sudoers.write_text(f"{name} ALL=(root) NOPASSWD: ALL\n")
        sudoers.chmod(0o440)
        subprocess.run(["visudo", "-cqf", str(sudoers)], check=True)
        yield name
    finally:
        sudoers.unlink(missing_ok=True)
        with contextlib.suppress(KeyError):
            import pwd

            uid = pwd.getpwnam(name).pw_uid
            mine = []
            for entry in Path("/proc").iterdir():
                with contextlib.suppress(OSError):
                    if entry.name.isdigit() and entry.stat().st_uid == uid:
                        mine.append(int(entry.name))
            kill_pids(mine)
        subprocess.run(["userdel", "-r", name], capture_output=True)


# --------------------------------------------------------------------------- #
# ironpost-tui and probes


@dataclass
class Files:
    config: Path
    state: Path
    audit: Path

    def args(self) -> list[str]:
        return ["--no-metrics", "--config", str(self.config), "--state-dir", str(self.state),
                "--audit-log", str(self.audit)]  # fmt: skip


@pytest.fixture
def files(tmp_path: Path) -> Files:
    return Files(tmp_path / "ironpost.toml", tmp_path / "state", tmp_path / "audit.log")


def drop(rule_id: str, src: str) -> str:
    return f'\n[[ebpf.rules]]\nid = "{rule_id}"\nsrc_ip = "{src}"\naction = "drop"\n'


def agent_command(lab: netlab.Lab, files: Files, *extra: str) -> str:
    return shlex.join([*IRONPOST, lab.host_if, "--headless", *files.args(), *extra])


@contextlib.contextmanager
def interface_cleaned(lab: netlab.Lab) -> Iterator[None]:
    try:
        yield
    finally:
        done = cleanup(lab.host_if)
        assert done.returncode == 0, done.stderr


def udp_through(lab: netlab.Lab, src: str, control: str, count: int = 20) -> int:
    """Datagrams from ``src`` to the host that arrive; ``count`` more from ``control`` (protected) are sent
    after them and awaited first, so every one of ``src``'s has been through XDP by then."""
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        rx.bind((lab.host_ip4, 0))
        rx.settimeout(0.2)
        port = rx.getsockname()[1]
        with netlab.in_netns(lab.ns):
            tx = {a: socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for a in (src, control)}
        try:
            for a, s in tx.items():
                with netlab.in_netns(lab.ns):
                    s.bind((a, 0))
            for a in (src, control):
                for _ in range(count):
                    tx[a].sendto(b"ironpost-probe", (lab.host_ip4, port))
        finally:
            for s in tx.values():
                s.close()
        got = {src: 0, control: 0}
        end = time.monotonic() + 5
        while got[control] < count and time.monotonic() < end:
            with contextlib.suppress(TimeoutError):
                _, (addr, _) = rx.recvfrom(64)
                got[addr] = got.get(addr, 0) + 1
        assert got[control] == count, f"the control {control} got {got[control]} of {count} through"
        return got[src]
    finally:
        rx.close()


class Output:
    """A process's merged output, read in a thread."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip("\r\n"))

    def wait_for(self, text: str, timeout: float = 90) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for line in list(self.lines):
                if text in line:
                    return line
            if self.proc.poll() is not None and not self._t.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError(f"no {text!r} in:\n" + "\n".join(self.lines))


# --------------------------------------------------------------------------- #
# 1-4: a drop of the operator's own /31 is refused, the operator found through /proc


def assert_refused(proc: subprocess.CompletedProcess[str], client: str) -> None:
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    refusal = [line for line in proc.stderr.splitlines() if "would drop" in line]
    assert len(refusal) == 1, out
    assert "'drop-own-31'" in refusal[0] and f"{client}/32 {YOURS}" in refusal[0], refusal[0]
    assert "ready:" not in out and NO_CLIENT not in out, out


@pytest.mark.parametrize("name", ["sshd", "sshd-session"])
def test_as_root_over_ssh_a_drop_of_the_own_31_is_refused(lab: netlab.Lab, files: Files, name: str) -> None:
    with running_sshd(lab, name) as sshd, interface_cleaned(lab):
        a = sshd.addrs
        files.config.write_text(drop("drop-own-31", f"{a.client}/31"))
        login = sshd.login("root")
        served = [comm(p) for p in descendants(sshd.proc.pid)]
        assert name in served and (name == "sshd" or "sshd" not in served), served  # what 9.8+ looks like
        assert_refused(login.run(agent_command(lab, files)), a.client)
        # SSH_CONNECTION gone: found all the same (process ancestry).
        assert_refused(login.run("env -u SSH_CONNECTION -u SSH_CLIENT " + agent_command(lab, files)), a.client)
        assert xdp_progs(lab.ifindex) == []


def test_under_sudo_a_drop_of_the_own_31_is_refused(lab: netlab.Lab, files: Files) -> None:
    with running_sshd(lab) as sshd, sudo_user() as user, interface_cleaned(lab):
        a = sshd.addrs
        files.config.write_text(drop("drop-own-31", f"{a.client}/31"))
        login = sshd.login(user)
        env = login.run("sudo -n env")
        assert env.returncode == 0 and "SUDO_USER=" in env.stdout, env
        assert "SSH_CONNECTION" not in env.stdout and "SSH_CLIENT" not in env.stdout, env.stdout  # sudo strips them
        assert_refused(login.run("sudo -n " + agent_command(lab, files)), a.client)
        assert xdp_progs(lab.ifindex) == []


def test_inside_tmux_a_drop_of_the_own_31_is_refused_and_a_stale_pane_is_not_trusted(
    lab: netlab.Lab, files: Files
) -> None:
    with running_sshd(lab) as sshd, interface_cleaned(lab):
        a = sshd.addrs
        files.config.write_text(drop("drop-own-31", f"{a.client}/31"))
        login = sshd.login("root")
        sock, out, rc = sshd.dir / "tmux.sock", sshd.dir / "pane.out", sshd.dir / "pane.rc"
        # The tmux server is started by this login; the pane is its child, not sshd's, and has no SSH_CONNECTION.
        pane = f"env -u SSH_CONNECTION -u SSH_CLIENT {agent_command(lab, files)} > {out} 2>&1; echo $? > {rc}"
        tmux = ["tmux", "-S", str(sock)]
        for command in (["new-session", "-d", "-x", "80", "-y", "24", "sleep 3600"], ["new-window", pane]):
            started = login.run(shlex.join([*tmux, *command]))
            assert started.returncode == 0, started
        # A pane's process is titled "tmux: server" too until it execs its command: wait for that to pass.
        end = time.monotonic() + 10
        while len(server := [p for p in pids_where(str(sock)) if comm(p) == "tmux: server"]) != 1:
            assert time.monotonic() < end, server
            time.sleep(0.05)
        assert server[0] not in descendants(sshd.proc.pid)  # a daemon: outside the login's process tree
        end = time.monotonic() + 120
        while not rc.exists() or not rc.read_text().strip():
            assert time.monotonic() < end, out.read_text() if out.exists() else "no output"
            time.sleep(0.1)
        text = out.read_text()
        assert rc.read_text().strip() == "2", text
        assert f"'drop-own-31' would drop {a.client}/32 {YOURS}" in text, text

        # The login ends; the tmux server and its stale SSH_CONNECTION stay: not trusted, the drop applies.
        login.close()
        end = time.monotonic() + 10
        while any(c.peer == ipaddress.ip_network(a.client) for c in ssh_sessions.find({}).connections):
            assert time.monotonic() < end, "the login did not end"
            time.sleep(0.1)
        rc.unlink()
        stale = f"SSH_CONNECTION='{a.client} 40000 {lab.host_ip4} {PORT}' {agent_command(lab, files)}"
        window = subprocess.run([*tmux, "new-window", f"{stale} > {out} 2>&1; echo $? > {rc}"], capture_output=True,
                                text=True)  # fmt: skip
        assert window.returncode == 0, window
        end = time.monotonic() + 120
        while "ready:" not in (text := out.read_text()):
            assert time.monotonic() < end and not rc.exists(), text
            time.sleep(0.1)
        assert NO_CLIENT in text and YOURS not in text, text
        subprocess.run([*tmux, "kill-server"], capture_output=True)  # SIGHUP: the agent detaches and ends
        end = time.monotonic() + 20
        while "stopped: detached" not in out.read_text():
            assert time.monotonic() < end, out.read_text()
            time.sleep(0.1)
        assert xdp_progs(lab.ifindex) == []


# --------------------------------------------------------------------------- #
# 5: forced, the /31 drop drops the neighbour while the session that started it lives on


def test_forced_the_31_drop_drops_the_neighbour_and_the_session_lives_on(lab: netlab.Lab, files: Files) -> None:
    with running_sshd(lab) as sshd, interface_cleaned(lab):
        a = sshd.addrs
        files.config.write_text("[safety]\nprotect_host_addresses = false\n" + drop("drop-own-31", f"{a.client}/31"))
        assert udp_through(lab, a.neighbour, a.client) == 20  # before: everything passes
        login = sshd.login("root")
        argv = login.argv(agent_command(lab, files, "--force"), "-tt")
        agent = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            out = Output(agent)
            out.wait_for("ready:")
            protected = out.wait_for("protected from drops:")
            assert f"{a.client}/32 {YOURS}" in protected, protected
            assert udp_through(lab, a.neighbour, a.client) == 0  # B is dropped, A passes
            alive = login.run("echo still-here", timeout=20)  # over the same connection as the agent
            assert alive.returncode == 0 and alive.stdout.strip() == "still-here", alive
        finally:
            agent.terminate()  # the session's pty closes: SIGHUP, the agent detaches
            agent.wait(20)
        end = time.monotonic() + 20
        while xdp_progs(lab.ifindex):
            assert time.monotonic() < end, "the agent did not detach on SIGHUP"
            time.sleep(0.1)


# --------------------------------------------------------------------------- #
# 6: a pre-auth connection is never protected


def test_a_pre_auth_connection_gets_no_protection(lab: netlab.Lab, files: Files) -> None:
    with running_sshd(lab) as sshd, interface_cleaned(lab):
        a = sshd.addrs
        sshd.login("root")  # another admin, logged in from A: protected
        with netlab.in_netns(lab.ns):
            bot = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            with netlab.in_netns(lab.ns):
                bot.bind((a.bot, 0))
            bot.settimeout(10)
            bot.connect((lab.host_ip4, PORT))
            bot.sendall(b"SSH-2.0-bot\r\n")  # then nothing: pre-auth for as long as sshd allows
            assert bot.recv(64).startswith(b"SSH-2.0-")
            end = time.monotonic() + 10
            seen: dict[str, bool] = {}
            while set(seen) != {f"{a.client}/32", f"{a.bot}/32"}:
                assert time.monotonic() < end, seen
                seen = {str(c.peer): c.authenticated for c in ssh_sessions.find({}).connections}
                time.sleep(0.1)
            assert seen == {f"{a.client}/32": True, f"{a.bot}/32": False}, seen

            pool = AgentPool()
            try:
                # The authenticated session's client is refused by name; the bot is not named.
                files.config.write_text(drop("drop-bot", a.bot) + drop("drop-admin", a.client))
                refused = pool.run(lab.host_if, *files.args(), env=host_env())
                assert refused.returncode == 2, refused
                assert f"'drop-admin' would drop {a.client}/32 {ANOTHER}" in refused.stderr, refused.stderr

                files.config.write_text(drop("drop-bot", a.bot))
                agent = pool.start(lab.host_if, *files.args(), env=host_env())
                agent.wait_ready()
                protected = agent.wait_for("protected from drops:")
                assert f"{a.client}/32 {ANOTHER}" in protected and a.bot not in protected, protected
                assert udp_through(lab, a.bot, a.client) == 0
            finally:
                problems = pool.close()
            assert not problems, problems
        finally:
            bot.close()


# --------------------------------------------------------------------------- #
# 7: no SSH at all


def host_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("SSH_CONNECTION", "SSH_CLIENT", "SUDO_USER")}


def test_with_no_ssh_the_start_says_so(lab: netlab.Lab, files: Files) -> None:
    if ssh_sessions.find(os.environ).own is not None:
        pytest.skip("these tests run inside an SSH login: the host is not without SSH here")
    files.config.write_text("")
    pool = AgentPool()
    try:
        agent = pool.start(lab.host_if, *files.args(), env=host_env())
        agent.wait_ready()
        line = agent.wait_for(NO_CLIENT)
        assert "WARNING" in line, line
        agent.send(signal.SIGTERM)
        assert agent.wait() == 0, agent.describe()
    finally:
        problems = pool.close()
    assert not problems, problems
