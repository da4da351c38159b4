"""Anti-lockout: finding the addresses to protect, and refusing rules that hit them.

The SSH session discovery is tested here on fake /proc trees (input parsing, worst cases included);
tests/test_ssh_operator.py runs it against a real sshd and ssh client.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.common import net

from ironpost_tui.model import Action, FilterRule
from ironpost_tui.rules import protect
from ironpost_tui.rules import ssh_sessions as sessions


def test_ssh_client_from_environment() -> None:
    env = {"SSH_CONNECTION": "198.18.9.9 52144 198.18.0.1 22"}
    assert protect.ssh_clients_from_env(env) == {net("198.18.9.9/32")}
    assert protect.ssh_clients_from_env({"SSH_CLIENT": "2001:db8::7 4000 22"}) == {net("2001:db8::7/128")}
    assert protect.ssh_clients_from_env({}) == set()


HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
SSHD_UID = 107  # the privilege-separation user


class FakeProc:
    """A /proc tree in tmp: processes with stat, status, sessionid, cmdline and fds; TCP tables."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "net").mkdir(parents=True)
        self.tcp: list[str] = []
        self.tcp6: list[str] = []

    def add(self, pid: int, ppid: int, comm: str, *, uid: int = 0, sessionid: int = sessions.UNSET,
            title: str = "", sockets: tuple[int, ...] = (), ns: tuple[int, int] | None = None) -> Path:  # fmt: skip
        d = self.root / str(pid)
        (d / "fd").mkdir(parents=True)
        if ns is not None:  # (net, pid) namespace inode numbers, as the kernel's ns links name them
            (d / "ns").mkdir()
            (d / "ns" / "net").symlink_to(f"net:[{ns[0]}]")
            (d / "ns" / "pid").symlink_to(f"pid:[{ns[1]}]")
        (d / "stat").write_text(f"{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194560 0 0 0 0\n")
        (d / "status").write_text(f"Name:\t{comm}\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n")
        (d / "sessionid").write_text(str(sessionid))
        (d / "cmdline").write_bytes((title or comm).encode() + b"\0")
        for n, inode in enumerate(sockets):
            (d / "fd" / str(3 + n)).symlink_to(f"socket:[{inode}]")
        return d

    def conn(self, inode: int, peer_hex: str, state: str = "01") -> None:
        """An sshd socket 198.18.0.1:22 <- peer (hex as /proc prints it)."""
        zeros = "00000000:00000000 00:00000000 00000000"
        self.tcp.append(f"   0: 010012C6:0016 {peer_hex}:CBB0 {state} {zeros} 0 0 {inode} 1")

    def conn6(self, inode: int) -> None:
        """2001:db8::1:22 <- 2001:db8::7, as /proc prints it: host-order words."""
        self.tcp6.append(
            f"   0: B80D0120000000000000000001000000:0016 B80D0120000000000000000007000000:CBB3 01 "
            f"00000000:00000000 00:00000000 00000000 0 0 {inode} 1"
        )

    def write(self) -> Path:
        (self.root / "net" / "tcp").write_text(HEADER + "".join(line + "\n" for line in self.tcp))
        (self.root / "net" / "tcp6").write_text(HEADER + "".join(line + "\n" for line in self.tcp6))
        return self.root


A, B, C, D = "090912C6", "0A0912C6", "0B0912C6", "0C0912C6"  # 198.18.9.9, .10, .11, .12


def _host(tmp_path: Path) -> FakeProc:
    """An sshd listener (1000) with: root logged in from A (PAM session 5); alice from B through privilege
    separation (session 6), running sudo ironpost-tui; a pre-auth bot from C that named a valid user
    ('root [priv]' and its '[net]' child); a bot from D just accepted; curl with a connection of its own."""
    f = FakeProc(tmp_path / "proc")
    f.add(1, 0, "init")
    f.add(1000, 1, "sshd", title="sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups", sockets=(1,))
    f.add(1100, 1000, "sshd", sessionid=5, title="sshd: root@pts/0", sockets=(11, 12))
    f.add(1101, 1100, "bash", sessionid=5)
    f.add(1200, 1000, "sshd", sessionid=6, title="sshd: alice [priv]", sockets=(21, 22))
    f.add(1201, 1200, "sshd", uid=1001, sessionid=6, title="sshd: alice@pts/1", sockets=(21, 23))
    f.add(1202, 1201, "bash", uid=1001, sessionid=6)
    f.add(1203, 1202, "sudo", sessionid=6)
    f.add(1204, 1203, "ironpost-tui", sessionid=6)
    f.add(1300, 1000, "sshd", title="sshd: root [priv]", sockets=(31,))
    f.add(1301, 1300, "sshd", uid=SSHD_UID, title="sshd: root [net]", sockets=(31, 32))
    f.add(1400, 1000, "sshd", title="sshd: [accepted]", sockets=(41,))
    f.add(1500, 1, "curl", sockets=(51,))
    for inode, peer in ((11, A), (21, B), (31, C), (41, D), (51, "0D0912C6")):
        f.conn(inode, peer)
    return f


def _find(root: Path, pid: int, env: dict[str, str] | None = None) -> sessions.Sessions:
    return sessions.find(env or {}, root, pid=pid, privsep_uid=SSHD_UID)


def authenticated(found: sessions.Sessions) -> dict[str, bool]:
    return {str(c.peer): c.authenticated for c in found.connections}


def test_authenticated_sessions_only(tmp_path: Path) -> None:
    found = _find(_host(tmp_path).write(), pid=1)
    # The bot that named a valid user has a '[priv]' monitor: still pre-auth. curl's connection is not sshd's.
    assert authenticated(found) == {
        "198.18.9.9/32": True,
        "198.18.9.10/32": True,
        "198.18.9.11/32": False,
        "198.18.9.12/32": False,
    }
    assert found.own is None
    assert found.clients() == (None, {net("198.18.9.9/32"), net("198.18.9.10/32")})


def test_without_pam_the_session_title_or_the_users_uid_tells(tmp_path: Path) -> None:
    """UsePAM no (or a PAM stack without pam_loginuid): no audit session ids at all."""
    f = FakeProc(tmp_path / "proc")
    f.add(1000, 1, "sshd-session", title="sshd-session: [listener]", sockets=(1,))
    f.add(1100, 1000, "sshd-session", title="sshd-session: root@notty", sockets=(11,))
    f.add(1200, 1000, "sshd-session", title="sshd-session: bob [priv]", sockets=(21,))  # ssh -N: no session
    f.add(1201, 1200, "sshd-session", uid=1002, title="sshd-session: bob [priv]", sockets=(21,))
    f.add(1300, 1000, "sshd-session", title="sshd-session: bob [priv]", sockets=(31,))
    f.add(1301, 1300, "sshd-auth", uid=SSHD_UID, title="sshd-auth: bob [net]", sockets=(31,))
    f.add(1400, 1000, "sshd-session", title="sshd-session: a@b [priv]", sockets=(41,))  # '@' in a user name
    for inode, peer in ((11, A), (21, B), (31, C), (41, D)):
        f.conn(inode, peer)
    root = f.write()
    expected = {"198.18.9.9/32": True, "198.18.9.10/32": True, "198.18.9.11/32": False, "198.18.9.12/32": False}
    assert authenticated(_find(root, 1)) == expected
    # Without the privilege-separation user's uid, a child's uid proves nothing: only titles count.
    no_uid = sessions.connections(sessions.scan(root), root, privsep_uid=None)
    assert {str(c.peer): c.authenticated for c in no_uid} == {**expected, "198.18.9.10/32": False}


HOST_NS, OTHER = (4026531840, 4026531836), 4026532999


@pytest.mark.parametrize("container", [(OTHER, HOST_NS[1]), (HOST_NS[0], OTHER), (OTHER, OTHER)])
def test_an_sshd_of_another_namespace_is_no_session(tmp_path: Path, container: tuple[int, int]) -> None:
    """Root in a container (uid 0 on the host too, when the container is rootful) names a process sshd, titles it
    as a login and connects where it likes: its peer must not become a protected (never dropped) address."""
    f = FakeProc(tmp_path / "proc")
    f.add(900, 1, "ironpost-tui", ns=HOST_NS)  # this process: what "our namespaces" are read from
    (f.root / "self").symlink_to("900")  # as /proc/self names the reader
    f.add(1000, 1, "sshd", title="sshd: [listener]", sockets=(1,), ns=HOST_NS)
    f.add(1100, 1000, "sshd", sessionid=5, title="sshd: root@pts/0", sockets=(11,), ns=HOST_NS)
    f.add(2000, 1, "sshd", sessionid=7, title="sshd: a@b", sockets=(21,), ns=container)
    f.conn(11, A)
    f.conn(21, D)
    root = f.write()
    found = _find(root, pid=900)
    assert authenticated(found) == {"198.18.9.9/32": True}
    assert found.clients() == (None, {net("198.18.9.9/32")})
    # Control: the same process in this host's namespaces is a session, and its peer protected.
    (root / "2000" / "ns" / "net").unlink()
    (root / "2000" / "ns" / "pid").unlink()
    (root / "2000" / "ns" / "net").symlink_to(f"net:[{HOST_NS[0]}]")
    (root / "2000" / "ns" / "pid").symlink_to(f"pid:[{HOST_NS[1]}]")
    assert authenticated(_find(root, pid=900)) == {"198.18.9.9/32": True, "198.18.9.12/32": True}


def test_own_session_by_ancestry_through_sudo(tmp_path: Path) -> None:
    found = _find(_host(tmp_path).write(), pid=1204)
    assert found.how == "process ancestry" and found.own is not None
    assert found.clients() == (net("198.18.9.10/32"), {net("198.18.9.9/32")})


def test_own_session_by_audit_session_id_from_a_tmux_server(tmp_path: Path) -> None:
    f = _host(tmp_path)
    f.add(1600, 1, "tmux: server", sessionid=5)  # started in root's login, a daemon since
    f.add(1601, 1600, "bash", sessionid=5)
    f.add(1602, 1601, "ironpost-tui", sessionid=5)
    f.add(1700, 1, "tmux: server", sessionid=9)  # started in a login that has ended
    f.add(1701, 1700, "ironpost-tui", sessionid=9)
    root = f.write()
    found = _find(root, pid=1602)
    assert (found.how, found.clients()) == ("audit session id", (net("198.18.9.9/32"), {net("198.18.9.10/32")}))
    assert _find(root, pid=1701).own is None


def test_ssh_connection_is_trusted_only_when_a_live_authenticated_session_has_that_peer(tmp_path: Path) -> None:
    f = _host(tmp_path)
    f.add(1800, 1, "ironpost-tui")  # no ancestry, no audit session: the environment only
    root = f.write()
    found = _find(root, 1800, {"SSH_CONNECTION": "198.18.9.9 40000 198.18.0.1 22"})
    assert (found.how, found.clients()[0]) == ("SSH_CONNECTION", net("198.18.9.9/32"))
    for stale in ("198.18.99.99", "198.18.9.11", "198.18.9.12"):  # gone; pre-auth; pre-auth
        assert _find(root, 1800, {"SSH_CONNECTION": f"{stale} 40000 198.18.0.1 22"}).own is None, stale


def test_a_session_id_inherited_from_the_listener_is_not_a_login(tmp_path: Path) -> None:
    """sshd started from an admin's login: every pre-auth process inherits that login's id."""
    f = FakeProc(tmp_path / "proc")
    f.add(1000, 1, "sshd", sessionid=3, title="sshd: [listener]", sockets=(1,))
    f.add(1001, 1000, "sshd", sessionid=3, title="sshd: [accepted]", sockets=(11,))
    f.add(1002, 1000, "sshd", sessionid=8, title="sshd: bob [priv]", sockets=(21,))
    f.add(1003, 1, "ironpost-tui", sessionid=3)
    f.conn(11, A)
    f.conn(21, B)
    f.conn(31, C, state="06")  # TIME_WAIT: not a connection
    root = f.write()
    assert authenticated(_find(root, 1)) == {"198.18.9.9/32": False, "198.18.9.10/32": True}
    assert _find(root, 1003).own is None  # the listener's login is not a connection's


def test_ipv6_peers(tmp_path: Path) -> None:
    f = FakeProc(tmp_path / "proc")
    f.add(1000, 1, "sshd", sockets=(1,))
    f.add(1100, 1000, "sshd", sessionid=4, title="sshd: root@pts/0", sockets=(11,))
    f.conn6(11)
    assert authenticated(_find(f.write(), 1)) == {"2001:db8::7/128": True}


def test_processes_merely_named_sshd_are_not_sshd(tmp_path: Path) -> None:
    f = FakeProc(tmp_path / "proc")
    f.add(2000, 1, "sshd", uid=1001, sessionid=4, title="sshd: mallory@pts/9", sockets=(11,))
    f.conn(11, A)
    assert _find(f.write(), pid=2000).connections == ()


def test_worst_cases_of_proc(tmp_path: Path) -> None:
    """Vanished and unreadable entries, a comm with spaces and ')', huge fd counts, garbage lines."""
    f = _host(tmp_path)
    odd = f.add(3000, 1, "we (ird) sshd", sockets=(61,))
    assert sessions.parse_stat((odd / "stat").read_text()) == ("we (ird) sshd", 1)
    assert sessions.parse_stat("3000 (sshd") is None and sessions.parse_stat("") is None
    f.conn(61, "0E0912C6")
    gone = f.add(3001, 1000, "sshd", title="sshd: dave@pts/4", sockets=(71,))
    (gone / "stat").unlink()  # ended between the directory listing and the read
    f.conn(71, "0F0912C6")
    half = f.add(3002, 1000, "sshd", title="sshd: carol@pts/3", sockets=(81,))
    (half / "status").unlink()  # unreadable: no uid, so not known to be root's
    (half / "sessionid").write_text("garbage")
    f.conn(81, "100912C6")
    dangling = f.add(3003, 1000, "sshd", sockets=())
    (dangling / "fd" / "3").symlink_to("/nonexistent")
    (f.root / "3004").mkdir()  # a directory with nothing in it
    (f.root / "self").symlink_to("1")
    big = f.add(3005, 1000, "sshd", title="sshd: [accepted]")
    for n in range(sessions.MAX_FDS * 3):
        (big / "fd" / str(n)).symlink_to("/dev/null")
    f.tcp += ["garbage line", "   9: zz:zz yy:yy 01 0 0 0 0 0 0 81", ""]
    found = _find(f.write(), pid=1204)
    assert authenticated(found) == {
        "198.18.9.9/32": True,
        "198.18.9.10/32": True,
        "198.18.9.11/32": False,
        "198.18.9.12/32": False,
    }
    assert found.how == "process ancestry" and found.clients()[0] == net("198.18.9.10/32")


def test_a_parent_cycle_ends(tmp_path: Path) -> None:
    f = FakeProc(tmp_path / "proc")
    f.add(10, 11, "a")
    f.add(11, 10, "b")
    assert _find(f.write(), pid=10).own is None


def test_no_proc_at_all(tmp_path: Path) -> None:
    found = sessions.find({"SSH_CONNECTION": "198.18.9.9 1 198.18.0.1 22"}, tmp_path / "nothing", pid=1)
    assert (found.connections, found.own) == ((), None)


def test_gather_labels_and_dedupes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The fake host's privilege-separation user, not this machine's (gather() reads the real one).
    monkeypatch.setattr(sessions, "_privsep_uid", lambda: SSHD_UID)
    root = _host(tmp_path).write()
    env = {"SSH_CONNECTION": "198.18.9.9 1 198.18.0.1 22"}
    got = protect.gather([net("198.18.9.9/32"), net("198.18.100.0/24")], env=env, include_host=False, proc=root)
    assert {p.network: p.reason for p in got} == {
        net("198.18.9.9/32"): protect.REASON_SSH_CLIENT,
        net("198.18.9.10/32"): protect.REASON_SSH_SESSION,
        net("198.18.100.0/24"): protect.REASON_PROTECT_LIST,
    }
    assert not protect.own_client_missing(got)
    assert "another authenticated SSH session" in got[1].describe()
    stale = protect.gather([], env={"SSH_CONNECTION": "198.18.99.99 1 198.18.0.1 22"}, include_host=False, proc=root)
    assert {p.reason for p in stale} == {protect.REASON_SSH_SESSION}
    assert protect.own_client_missing(stale)
    assert protect.gather([], env=env, include_ssh=False, include_host=False, proc=root) == []


def test_violation_exact_inside_and_covering() -> None:
    protected = [protect.Protected(net("198.18.9.9/32"), protect.REASON_SSH_CLIENT)]
    exact = FilterRule("a", Action.DROP, src_ip=net("198.18.9.9/32"))
    covering = FilterRule("b", Action.DROP, src_ip=net("198.18.0.0/16"))
    elsewhere = FilterRule("c", Action.DROP, src_ip=net("198.19.0.0/16"))
    monitor = FilterRule("d", Action.MONITOR, src_ip=net("198.18.9.9/32"))
    no_src = FilterRule("e", Action.DROP, dst_port=22)
    assert protect.violation(exact, protected) == protected[0]
    assert protect.violation(covering, protected) == protected[0]
    assert protect.violation(elsewhere, protected) is None
    assert protect.violation(monitor, protected) is None
    assert protect.violation(no_src, protected) is None
    inside = [protect.Protected(net("198.18.0.0/16"), protect.REASON_PROTECT_LIST)]
    assert protect.violation(exact, inside) == inside[0]
    assert "your SSH client address" in protected[0].describe()


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 1 << 17), st.integers(15, 32)), min_size=1, max_size=6),
    st.integers(0, 1 << 17),
    st.integers(0, 32),
    st.booleans(),
)
def test_violation_is_ipaddress_overlaps(
    protections: list[tuple[int, int]], offset: int, plen: int, v6_protection: bool
) -> None:
    """violation() compares address ranges as integers: the same answer as ipaddress's overlaps()."""
    base = int(ipaddress.IPv4Address("198.18.0.0"))
    protected = [protect.Protected(ipaddress.ip_network((base + o, p), strict=False), "x") for o, p in protections]
    if v6_protection:  # another version never overlaps
        protected.insert(0, protect.Protected(ipaddress.ip_network("::/0"), "v6"))
    src = ipaddress.ip_network((base + offset, plen), strict=False)
    rule = FilterRule("r", Action.DROP, src_ip=src)
    expected = next((p for p in protected if p.network.version == 4 and p.network.overlaps(src)), None)
    assert protect.violation(rule, protected) == expected
    assert protect.violation(rule, protect.Spans(protected)) == expected  # the ranges made once: the same


def test_the_controller_checks_against_its_protections_however_they_are_set() -> None:
    """RuleController.check compares rules with ranges made from its protections once (protect.Spans):
    the ranges follow the list whether set_protected or a plain assignment sets it (stale ranges would
    let a rule lock the operator out)."""
    from ironpost_tui.rules.control import LockoutRefused, RuleController

    control = RuleController.__new__(RuleController)  # check() reads the protections alone: no table
    control.protected = []
    rule = FilterRule("a", Action.DROP, src_ip=net("198.18.9.0/24"))
    control.check(rule)  # nothing protected: accepted
    control.protected = [protect.Protected(net("198.18.9.9/32"), protect.REASON_SSH_CLIENT)]
    try:
        control.check(rule)
    except LockoutRefused:
        pass
    else:
        raise AssertionError("a drop rule covering the SSH client was accepted")
    control.check(rule, force=True)
    control.protected = []
    control.check(rule)
