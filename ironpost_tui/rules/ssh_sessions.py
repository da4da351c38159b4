"""The SSH connections served on this host, read from /proc, and the one the operator came in on.

A connection is a TCP socket in state ESTABLISHED held by a root-owned
process named ``sshd`` (OpenSSH before 9.8) or ``sshd-session`` (9.8 and
later serve each connection in a process of that name; ``sshd-auth``, 10.0's
pre-auth process, is never evidence of anything).  Its peer is the client.

It is **authenticated** when one of the processes holding its socket shows a
sign only a logged-in session has:

1. an audit session id (``/proc/PID/sessionid``) set and different from the
   id of the sshd listener the connection was forked from: pam_loginuid gives
   each login a new one when the PAM session opens, after authentication
   (``UsePAM yes``, Debian's and Fedora's default);
2. a title ``sshd: USER@TTY`` (``USER@notty``), which sshd sets when a session
   channel opens, after authentication;
3. a uid that is neither root nor the privilege-separation user ``sshd``:
   after authentication the per-connection child runs as the user who logged
   in; before it, as ``sshd``.

Pre-auth processes show none of them: ``sshd: [accepted]`` and ``sshd: [net]``
inherit the listener's session id, and ``sshd: USER [priv]`` is the monitor's
title as soon as a client names a valid user, authenticated or not.

Only processes in ironpost's own network and PID namespaces count: root in a
container (a rootful one has uid 0 on the host too) could otherwise name a
process ``sshd``, title it ``sshd: a@b`` and connect to an address of its
choosing, which the host would then never drop.

**The operator's own connection**, in this order:

1. *process ancestry*: the parent chain (``/proc/PID/stat``) from this process
   up to a process that holds a connection's socket.  Survives ``sudo`` and
   ``su`` (they stay in the chain) and needs no PAM; a tmux or screen server is
   a daemon, outside the chain.
2. *audit session id*: this process's ``sessionid`` equal to the one a
   connection's session process got at login.  The kernel keeps it across
   fork, ``sudo``, ``su`` and daemons, so it survives tmux and screen, whose
   servers carry the id of the login that started them (a server started in an
   earlier login carries that login's id: its panes find no live connection
   here, or that other login's while it lasts).
3. ``SSH_CONNECTION`` / ``SSH_CLIENT``, only when a live, authenticated
   connection has that peer: a tmux pane keeps them from the login it was
   made in, long after that login is gone.

The pty the session holds was not used: from inside tmux the terminal is
tmux's own, and linking it to the attached client's pty needs tmux itself.

Every read tolerates a process that ends mid-scan or a file that cannot be
read: what cannot be read is not evidence.
"""

from __future__ import annotations

import ipaddress
import os
import pwd
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ironpost_tui.model import IPNetwork

UNSET = 4294967295  # (u32)-1: no audit session
SESSION_NAMES = frozenset({"sshd", "sshd-session"})
MAX_FDS = 1024  # an sshd process holds a dozen; a process merely named sshd may hold millions
MAX_DEPTH = 256  # parent links followed: a cycle (a pid reused mid-scan) cannot loop
_TCP_ESTABLISHED = "01"
_SESSION_TITLE = re.compile(r"^(?:sshd|sshd-session): [^\s@]+@\S+$")


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    comm: str
    uid: int  # real uid; -1 when unreadable
    sessionid: int  # UNSET when unset or unreadable
    title: str = ""  # the command line as sshd sets it (only read for sshd processes)
    sockets: frozenset[str] = frozenset()  # socket inodes (only read for sshd processes)
    netns: str = ""  # the ns/net link, "" when unreadable
    pidns: str = ""  # the ns/pid link, "" when unreadable


@dataclass(frozen=True)
class Connection:
    peer: IPNetwork
    peer_port: int
    pids: tuple[int, ...]  # every sshd process holding the socket
    authenticated: bool
    login_session: int  # the audit session id of its login, UNSET when none was seen


@dataclass(frozen=True)
class Sessions:
    connections: tuple[Connection, ...]
    own: Connection | None
    how: str  # how ``own`` was found: "process ancestry", "audit session id", "SSH_CONNECTION"

    def clients(self) -> tuple[IPNetwork | None, set[IPNetwork]]:
        """(the operator's client, the clients of the other authenticated connections)."""
        own = self.own.peer if self.own is not None else None
        others = {c.peer for c in self.connections if c.authenticated and c.peer != own}
        return own, others


# --------------------------------------------------------------------------- #
# reading /proc


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except (OSError, ValueError):
        return None


def parse_stat(text: str) -> tuple[str, int] | None:
    """(comm, ppid) from /proc/PID/stat; comm may hold spaces and parentheses, so split at the last ')'."""
    start, end = text.find("("), text.rfind(")")
    if start < 0 or end < start:
        return None
    rest = text[end + 1 :].split()
    try:
        return text[start + 1 : end], int(rest[1])
    except (IndexError, ValueError):
        return None


def _int(text: str | None, default: int) -> int:
    try:
        return int(text.strip()) if text is not None else default
    except ValueError:
        return default


def _uid(status: str | None) -> int:
    for line in (status or "").splitlines():
        if line.startswith("Uid:"):
            fields = line.split()
            return _int(fields[1], -1) if len(fields) > 1 else -1
    return -1


def _sockets(fd_dir: Path) -> frozenset[str]:
    found = set()
    try:
        with os.scandir(fd_dir) as entries:
            for n, entry in enumerate(entries):
                if n >= MAX_FDS:
                    break
                try:
                    target = os.readlink(entry.path)
                except OSError:
                    continue
                if target.startswith("socket:[") and target.endswith("]"):
                    found.add(target[8:-1])
    except OSError:
        pass
    return frozenset(found)


def read_proc(pid_dir: Path) -> Proc | None:
    """One process, or None when it is gone or its stat cannot be read."""
    try:
        pid = int(pid_dir.name)
    except ValueError:
        return None
    stat = _read(pid_dir / "stat")
    parsed = parse_stat(stat) if stat is not None else None
    if parsed is None:
        return None
    comm, ppid = parsed
    proc = Proc(pid, ppid, comm, _uid(_read(pid_dir / "status")), _int(_read(pid_dir / "sessionid"), UNSET))
    if comm not in SESSION_NAMES:
        return proc
    try:
        raw = (pid_dir / "cmdline").read_bytes()
    except OSError:
        raw = b""
    netns, pidns = namespaces(pid_dir)
    title = raw.replace(b"\0", b" ").decode(errors="replace").strip()
    return Proc(proc.pid, ppid, comm, proc.uid, proc.sessionid, title, _sockets(pid_dir / "fd"), netns, pidns)


def namespaces(pid_dir: Path) -> tuple[str, str]:
    """(the ns/net link, the ns/pid link) of a process, each "" when unreadable."""
    out = []
    for ns in ("net", "pid"):
        try:
            out.append(os.readlink(pid_dir / "ns" / ns))
        except OSError:
            out.append("")
    return out[0], out[1]


def scan(proc_root: Path) -> dict[int, Proc]:
    procs: dict[int, Proc] = {}
    try:
        entries = [e for e in os.scandir(proc_root) if e.name.isdigit()]
    except OSError:
        return procs
    for entry in entries:
        p = read_proc(Path(entry.path))
        if p is not None:
            procs[p.pid] = p
    return procs


def _decode_addr(hex_addr: str) -> str:
    raw = bytes.fromhex(hex_addr)
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw[::-1]))
    # /proc/net/tcp6 prints the address as four host-order 32-bit words
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    return str(ipaddress.IPv6Address(words))


def host_net(addr: str) -> IPNetwork | None:
    try:
        ip = ipaddress.ip_address(addr.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ipaddress.ip_network(ip)


def established_peers(text: str, inodes: set[str]) -> dict[str, tuple[IPNetwork, int]]:
    """inode -> (peer, peer port) of the ESTABLISHED sockets among ``inodes`` in a /proc/net/tcp{,6} table."""
    out: dict[str, tuple[IPNetwork, int]] = {}
    for line in text.splitlines()[1:]:
        cols = line.split()
        if len(cols) < 10 or cols[3] != _TCP_ESTABLISHED or cols[9] not in inodes:
            continue
        addr, _, port = cols[2].partition(":")
        try:
            net = host_net(_decode_addr(addr))
            peer_port = int(port, 16)
        except ValueError:
            continue
        if net is not None:
            out[cols[9]] = (net, peer_port)
    return out


def _tcp_tables(proc_root: Path, procs: Iterable[Proc]) -> dict[str, tuple[IPNetwork, int]]:
    """Peers of the sshd sockets, read from each network namespace sshd runs in (once per namespace)."""
    by_ns: dict[str, list[Proc]] = {}
    for p in procs:
        by_ns.setdefault(p.netns, []).append(p)
    out: dict[str, tuple[IPNetwork, int]] = {}
    for members in by_ns.values():
        inodes = set().union(*(p.sockets for p in members))
        for table in ("tcp", "tcp6"):
            text = None
            for where in [proc_root / str(p.pid) / "net" for p in members[:3]] + [proc_root / "net"]:
                text = _read(where / table)
                if text is not None:
                    break
            if text is not None:
                out.update(established_peers(text, inodes))
    return out


# --------------------------------------------------------------------------- #
# connections, and the operator's


def _privsep_uid() -> int | None:
    try:
        return pwd.getpwnam("sshd").pw_uid
    except KeyError:
        return None


def connections(
    procs: Mapping[int, Proc], proc_root: Path, privsep_uid: int | None = None, home: tuple[str, str] = ("", "")
) -> list[Connection]:
    """The sshd connections of ``procs``; with ``home`` (ironpost's (netns, pidns), both read), only those of
    processes in both (see the module's docstring)."""
    sshd = [
        p
        for p in procs.values()
        if p.comm in SESSION_NAMES and p.sockets and (not all(home) or (p.netns, p.pidns) == home)
    ]
    peers = _tcp_tables(proc_root, sshd)
    holders: dict[str, list[Proc]] = {}
    for p in sshd:
        for inode in p.sockets:
            if inode in peers:
                holders.setdefault(inode, []).append(p)
    out = []
    for inode, group in holders.items():
        if not any(p.uid == 0 for p in group):
            continue  # a process merely named sshd, not sshd's
        pids = {p.pid for p in group}
        top = min((p for p in group if p.ppid not in pids), key=lambda p: p.pid, default=group[0])
        listener = procs.get(top.ppid)
        base = listener.sessionid if listener is not None and listener.comm in SESSION_NAMES else UNSET
        logins = [p.sessionid for p in group if p.sessionid not in (UNSET, base)]
        authenticated = bool(logins) or any(
            _SESSION_TITLE.match(p.title) or (privsep_uid is not None and p.uid not in (-1, 0, privsep_uid))
            for p in group
        )
        peer, port = peers[inode]
        out.append(Connection(peer, port, tuple(sorted(pids)), authenticated, logins[0] if logins else UNSET))
    return sorted(out, key=lambda c: (c.pids, str(c.peer)))


def _by_ancestry(pid: int, procs: Mapping[int, Proc], conns: list[Connection]) -> Connection | None:
    holder = {p: c for c in conns for p in c.pids}
    seen = 0
    while pid > 1 and seen < MAX_DEPTH:
        if pid in holder:
            return holder[pid]
        p = procs.get(pid)
        if p is None:
            return None
        pid, seen = p.ppid, seen + 1
    return None


def _env_peer(env: Mapping[str, str]) -> IPNetwork | None:
    for var in ("SSH_CONNECTION", "SSH_CLIENT"):
        fields = env.get(var, "").split()
        if fields:
            net = host_net(fields[0])
            if net is not None:
                return net
    return None


def find(
    env: Mapping[str, str], proc_root: Path = Path("/proc"), pid: int | None = None, privsep_uid: int | None = None
) -> Sessions:
    """Every sshd connection, and the operator's (``pid``'s, this process by default)."""
    pid = os.getpid() if pid is None else pid
    procs = scan(proc_root)
    home = namespaces(proc_root / "self")  # this process's: the console's engine shares its parent's
    conns = connections(procs, proc_root, _privsep_uid() if privsep_uid is None else privsep_uid, home)
    own = _by_ancestry(pid, procs, conns)
    if own is not None:
        return Sessions(tuple(conns), own, "process ancestry")
    me = procs.get(pid)
    mine = me.sessionid if me is not None else _int(_read(proc_root / str(pid) / "sessionid"), UNSET)
    if mine != UNSET:
        for c in conns:
            if c.login_session == mine:
                return Sessions(tuple(conns), c, "audit session id")
    peer = _env_peer(env)
    for c in conns:
        if c.authenticated and c.peer == peer:
            return Sessions(tuple(conns), c, "SSH_CONNECTION")
    return Sessions(tuple(conns), None, "")
