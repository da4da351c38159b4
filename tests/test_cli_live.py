"""``ironpost-tui block|unblock|rules|alerts IFACE`` against a running agent, with real packets.

The agent is an ``ironpost-tui IFACE --headless`` subprocess on the host side of a netlab veth
pair; datagrams come from the lab's namespace (``support.traffic``).  Callers are the real command
(a subprocess, as fail2ban runs it) or, where a test makes a thousand calls, ``ctl.client.ask``:
the function the command itself calls, in this process.  Every agent gets ``--state-dir`` and
``--audit-log`` under ``tmp_path``.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import socket
import stat
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import IP, TCP
from support import netlab
from support.agents import IRONPOST, Agent, AgentPool, agent_env, one_error_line, ready_info, xdp_progs
from support.agents import run as run_ironpost
from support.common import REPO
from support.traffic import Flood, Probe

from ironpost_tui.config.watch import ConfigSource
from ironpost_tui.ctl.client import ask
from ironpost_tui.engine.control_socket.protocol import Block, Unblock, socket_path
from ironpost_tui.engine.engine import Engine, EngineOptions
from ironpost_tui.engine.live import LiveSource
from ironpost_tui.kernel.host import RUN_DIR

pytestmark = pytest.mark.root

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
ITERATIONS = 1_000
REAL_EVERY = 10  # every 10th block and unblock is the real command: 100 of each
EFFECT_SECS = 1.0  # the deadline: a block drops (an unblock passes) within 1 s of being asked


@dataclass
class Paths:
    state_dir: Path
    audit: Path
    config: Path

    def args(self, with_config: bool = False) -> list[str]:
        cfg = ["--config", str(self.config)] if with_config else []
        return [*cfg, "--state-dir", str(self.state_dir), "--audit-log", str(self.audit)]

    def audit_lines(self) -> list[dict[str, Any]]:
        if not self.audit.exists():
            return []
        return [json.loads(line) for line in self.audit.read_text().splitlines()]

    def cli_lines(self) -> list[dict[str, Any]]:
        return [e for e in self.audit_lines() if e.get("via") == "cli"]


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    return Paths(tmp_path / "state", tmp_path / "audit.log", tmp_path / "ironpost.toml")


def start_agent(agents: AgentPool, lab: netlab.Lab, paths: Paths, *extra: str, with_config: bool = False) -> Agent:
    agent = agents.start(lab.host_if, *paths.args(with_config), *extra, env=agent_env())
    mode, prog_id = ready_info(agent.wait_ready())
    assert xdp_progs(lab.ifindex) == [(mode, prog_id)]
    assert f"command line on {RUN_DIR / lab.host_if}.sock" in agent.stdout
    return agent


def cli(*args: str, prefix: tuple[str, ...] = ()) -> tuple[int, subprocess.CompletedProcess[str]]:
    """The real command, to its end: (its pid, its result)."""
    proc = subprocess.Popen(
        [*prefix, *IRONPOST, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        cwd="/",
        env=agent_env(),
    )
    out, err = proc.communicate(timeout=60)
    return proc.pid, subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def rules_json(lab: netlab.Lab) -> list[dict[str, Any]]:
    _, proc = cli("rules", lab.host_if, "--json")
    assert proc.returncode == 0, proc
    data = json.loads(proc.stdout)
    assert isinstance(data, list)
    return data


def host(addr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(addr)


# --------------------------------------------------------------------------- #
# a thousand blocks while traffic flows


@pytest.mark.slow
def test_a_thousand_blocks_and_unblocks_while_traffic_flows(
    lab: netlab.Lab, agents: AgentPool, paths: Paths, probe: Probe
) -> None:
    """Each block drops the namespace's datagrams within 1 s of being asked, each unblock lets them
    through again within 1 s, while a flood from the same address runs; 2,000 audit lines via cli,
    each naming the caller's pid as the kernel gave it.  Every 10th call is the real command; the
    others are ctl.client.ask, which the command calls.  Midway, nobody is refused."""
    agent = start_agent(agents, lab, paths)
    net = host(lab.ns_ip4)
    flood = Flood(lab, per_ms=2)  # steady traffic (about a thousand datagrams a second), not a CPU hog
    flood.start()
    block_secs: list[float] = []
    unblock_secs: list[float] = []
    real_pids: list[int] = []
    by_command: list[float] = []  # seconds to take effect, block and unblock, through the real command
    by_ask: list[float] = []  # ... through ctl.client.ask in this process
    try:
        probe.until(passes=True)  # positive control: the address passes before any block
        for i in range(ITERATIONS):
            real = i % REAL_EVERY == 0
            for blocking, spent in ((True, block_secs), (False, unblock_secs)):
                t0 = time.monotonic()
                if real:
                    args = ("block", lab.host_if, lab.ns_ip4, "--comment", f"round {i}") if blocking else (
                        "unblock", lab.host_if, lab.ns_ip4)  # fmt: skip
                    pid, proc = cli(*args)
                    assert proc.returncode == 0 and proc.stderr == "", proc
                    real_pids.append(pid)
                elif blocking:
                    assert ask(lab.host_if, Block(net, comment=f"round {i}"))["change"] == "add"
                else:
                    [gone] = ask(lab.host_if, Unblock(addr=net))["deleted"]
                    assert gone["id"] == f"block-{lab.ns_ip4}"
                asked = time.monotonic() - t0
                assert asked < EFFECT_SECS, f"round {i}: the {'block' if blocking else 'unblock'} took {asked:.2f} s"
                spent.append(asked + probe.until(passes=not blocking, within=EFFECT_SECS - asked))
                (by_command if real else by_ask).append(spent[-1])
                if blocking and i == ITERATIONS // 2:
                    # a second, unprivileged caller, mid-loop: refused by the socket's permissions
                    _, proc = cli("unblock", lab.host_if, lab.ns_ip4, prefix=tuple(NOBODY))
                    assert proc.returncode == 3 and "permission denied" in one_error_line(proc.stderr), proc
                    assert probe.burst(3) == 0  # still blocked
            flood.drain()
    finally:
        flood.stop()
    flood.drain()
    flood.close()

    print(
        f"\n{ITERATIONS} rounds: block took effect in median {statistics.median(block_secs) * 1000:.1f} ms, "
        f"max {max(block_secs) * 1000:.1f} ms; unblock median {statistics.median(unblock_secs) * 1000:.1f} ms, "
        f"max {max(unblock_secs) * 1000:.1f} ms; flood {flood.sent} sent, {flood.received} received; "
        f"max through the command {max(by_command) * 1000:.1f} ms, through ask {max(by_ask) * 1000:.1f} ms"
    )
    assert len(block_secs) == len(unblock_secs) == ITERATIONS
    assert max(block_secs) <= EFFECT_SECS and max(unblock_secs) <= EFFECT_SECS
    # the flood flowed throughout, and the blocks dropped part of it
    assert flood.errors == 0 and 0 < flood.received < flood.sent

    lines = paths.cli_lines()
    assert len(lines) == 2 * ITERATIONS
    assert [e["change"] for e in lines] == ["add", "delete"] * ITERATIONS
    assert {e["rule"]["id"] for e in lines} == {f"block-{lab.ns_ip4}"}
    assert all(e["uid"] == 0 and e["user"] == "root" for e in lines)
    # the pid is the caller's: this process, or the command that was run
    assert len(real_pids) == 2 * ITERATIONS // REAL_EVERY
    assert [e["pid"] for e in lines if e["pid"] != os.getpid()] == real_pids
    assert sum(1 for e in lines if e["pid"] == os.getpid()) == 2 * ITERATIONS - len(real_pids)
    # saved as the console's edits are: the state file ends with no rule, and the agent says nothing went wrong
    assert rules_json(lab) == []
    assert f"block-{lab.ns_ip4}" not in (paths.state_dir / f"{lab.host_if}.rules.toml").read_text()
    assert "Traceback" not in agent.stdout + agent.stderr and " ERROR " not in agent.stdout


# --------------------------------------------------------------------------- #
# who may ask


def test_an_unprivileged_caller_is_refused(lab: netlab.Lab, agents: AgentPool, paths: Paths, probe: Probe) -> None:
    """nobody is kept out by the socket's permissions; with them loosened, by the controller's
    SO_PEERCRED check.  Either way nothing is applied; root, meanwhile, is served."""
    agent = start_agent(agents, lab, paths)
    sock = socket_path(lab.host_if)
    assert stat.S_IMODE(os.stat(RUN_DIR).st_mode) == 0o700
    assert stat.S_IMODE(os.lstat(sock).st_mode) == 0o600 and os.lstat(sock).st_uid == 0

    def nothing_applied() -> None:
        assert rules_json(lab) == []
        assert paths.cli_lines() == []
        assert probe.burst(5) == 5

    for args in (("block", lab.host_if, lab.ns_ip4), ("unblock", lab.host_if, "--id", "x"), ("rules", lab.host_if)):
        _, proc = cli(*args, prefix=tuple(NOBODY))
        assert proc.returncode == 3, proc  # NOT_PERMITTED
        msg = one_error_line(proc.stderr)
        assert "permission denied" in msg and "root" in msg and "sudo" in msg, msg
    nothing_applied()

    # Permissions loosened (by mistake, or by an attacker with some other foothold): the peer check holds.
    os.chmod(RUN_DIR, 0o755)
    os.chmod(sock, 0o666)
    try:
        _, proc = cli("block", lab.host_if, lab.ns_ip4, prefix=tuple(NOBODY))
        assert proc.returncode == 3, proc
        assert "uid 65534 is not root" in one_error_line(proc.stderr)
        agent.wait_for("refused uid 65534")
        nothing_applied()
        # positive control: root through the same socket is served
        _, proc = cli("block", lab.host_if, lab.ns_ip4)
        assert proc.returncode == 0, proc
        assert probe.burst(5) == 0
    finally:
        os.chmod(sock, 0o600)
        os.chmod(RUN_DIR, 0o700)
    [line] = paths.cli_lines()
    assert line["change"] == "add" and line["uid"] == 0


# --------------------------------------------------------------------------- #
# no controller, a dead one, a planted link


def test_without_a_controller_the_commands_say_so_with_their_own_exit_code(
    lab: netlab.Lab, agents: AgentPool, paths: Paths
) -> None:
    commands = (
        ("block", lab.host_if, lab.ns_ip4),
        ("unblock", lab.host_if, lab.ns_ip4),
        ("rules", lab.host_if),
        ("alerts", lab.host_if, "--json"),
    )
    assert not socket_path(lab.host_if).exists()
    for args in commands:
        _, proc = cli(*args)
        assert proc.returncode == 15, proc  # NO_CONTROLLER
        msg = one_error_line(proc.stderr)
        assert f"no ironpost-tui controls {lab.host_if}" in msg and proc.stdout == "", msg

    # A controller killed with -9 leaves its socket: nobody answers it, and the commands say so.
    agent = start_agent(agents, lab, paths)
    agent.kill()
    assert stat.S_ISSOCK(os.lstat(socket_path(lab.host_if)).st_mode)
    for args in commands:
        _, proc = cli(*args)
        assert proc.returncode == 15, proc
        assert "left by one that has ended" in one_error_line(proc.stderr)
    # The next controller replaces it and serves.
    agent = start_agent(agents, lab, paths)
    assert "was left by a controller that ended without removing it: replaced" in agent.stdout
    assert rules_json(lab) == []
    # A stopped controller removes its socket.
    agent.send(15)
    assert agent.wait() == 0, agent.describe()
    assert not socket_path(lab.host_if).exists()
    _, proc = cli("rules", lab.host_if)
    assert proc.returncode == 15, proc
    # `ironpost-tui cleanup IFACE` removes what a killed one left.
    agent = start_agent(agents, lab, paths)
    agent.kill()
    proc = run_ironpost("cleanup", lab.host_if)
    assert proc.returncode == 0 and "left by an ironpost-tui that has ended" in proc.stdout, proc
    assert not socket_path(lab.host_if).exists()
    assert "does not exist" in one_error_line(cli("rules", lab.host_if)[1].stderr)


def test_a_link_planted_at_the_socket_path_is_replaced_not_followed(
    lab: netlab.Lab, agents: AgentPool, paths: Paths, tmp_path: Path
) -> None:
    target = tmp_path / "precious"
    target.write_text("keep me\n")
    path = socket_path(lab.host_if)
    RUN_DIR.mkdir(mode=0o700, exist_ok=True)
    path.symlink_to(target)
    try:
        start_agent(agents, lab, paths)
        st = os.lstat(path)
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
        assert target.read_text() == "keep me\n"
        assert rules_json(lab) == []
    finally:
        if path.is_symlink():
            path.unlink()


# --------------------------------------------------------------------------- #
# bad input, anti-lockout


def test_bad_input_exits_2_in_one_line_and_applies_nothing(
    lab: netlab.Lab, agents: AgentPool, paths: Paths, probe: Probe
) -> None:
    agent = start_agent(agents, lab, paths)
    other = "198.18.0.0/15"  # no rule blocks it: unblocking it is bad input
    _, proc = cli("block", lab.host_if, lab.ns_ip4, "--id", "kept", "--ttl", "1h")
    assert proc.returncode == 0, proc
    before_rules = rules_json(lab)
    before_audit = paths.audit_lines()
    state = (paths.state_dir / f"{lab.host_if}.rules.toml").read_text()
    bad = [
        ("block", lab.host_if, "198.18.0.999"),
        ("block", lab.host_if, f"{lab.ns_ip4}/33"),
        ("block", lab.host_if, f"{lab.ns_ip4}/24"),  # host bits
        ("block", lab.host_if, lab.ns_ip6, "--ttl", "0s"),
        ("block", lab.host_if, lab.ns_ip6, "--ttl", "banana"),
        ("block", lab.host_if, lab.ns_ip6, "--ttl", "-5m"),
        ("block", lab.host_if, lab.ns_ip6, "--id", ""),
        ("block", lab.host_if, lab.ns_ip6, "--id", "x\x1b]0;owned\x07"),
        ("block", lab.host_if, lab.ns_ip6, "--id", "x" * 257),
        ("block", lab.host_if, lab.ns_ip6, "--comment", "evil \u202e gpj.exe"),
        ("block", lab.host_if, lab.ns_ip6, "--comment", "c" * 1025),
        ("block", lab.host_if, lab.ns_ip6, "--id", "kept"),  # the id is a block of another address
        ("block", lab.host_if),
        ("block", lab.host_if, lab.ns_ip6, "--bogus"),
        ("block", "../etc", lab.ns_ip6),
        ("unblock", lab.host_if),
        ("unblock", lab.host_if, lab.ns_ip4, "--id", "kept"),
        ("unblock", lab.host_if, "--id", "no-such-rule"),
        ("unblock", lab.host_if, other),
        ("unblock", lab.host_if, f"{lab.ns_ip4}/31"),  # not the prefix the rule blocks
        ("rules", lab.host_if, "extra"),
        ("alerts", lab.host_if, "--yaml"),
    ]
    for args in bad:
        _, proc = cli(*args)
        assert proc.returncode == 2, proc
        msg = one_error_line(proc.stderr)
        assert proc.stdout == "" and "\x1b" not in msg and "\u202e" not in msg, msg
    # Requests written by hand, past the command's own checks: the controller checks again.
    raw = [
        {"v": 1, "op": "block", "addr": lab.ns_ip6, "comment": "\x1b[2Jgone"},
        {"v": 1, "op": "block", "addr": lab.ns_ip6, "ttl": 0},
        {"v": 1, "op": "block", "addr": lab.ns_ip6, "force": "yes"},
        {"v": 1, "op": "block", "addr": "198.18.0.1/8"},
        {"v": 2, "op": "block", "addr": lab.ns_ip6},
        {"v": 1, "op": "flush"},
        {"v": 1, "op": "unblock", "addr": lab.ns_ip4, "id": "kept"},
    ]
    for request in raw:
        answer = raw_request(lab, json.dumps(request).encode() + b"\n")
        assert answer["ok"] is False and answer["exit"] == 2, (request, answer)
    answer = raw_request(lab, b'{"v": 1, "op": "block", "addr": "' + b"1" * 20_000 + b'"}\n')
    assert answer["ok"] is False and answer["exit"] == 2 and "longer than" in answer["error"]

    assert rules_json(lab) == before_rules
    assert paths.audit_lines() == before_audit
    assert (paths.state_dir / f"{lab.host_if}.rules.toml").read_text() == state
    assert probe.burst(5) == 0  # the rule in force still drops
    assert "Traceback" not in agent.stdout + agent.stderr


def raw_request(lab: netlab.Lab, data: bytes) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(socket_path(lab.host_if)))
        try:
            s.sendall(data)
        except BrokenPipeError:
            pass
        answer = json.loads(s.makefile("rb").readline())
    assert isinstance(answer, dict)
    return answer


def test_anti_lockout_refuses_a_protected_address_unless_forced(
    lab: netlab.Lab, agents: AgentPool, paths: Paths, probe: Probe
) -> None:
    """The namespace's address is in [safety] protect: refused (exit 2, naming the protection and
    --force), nothing applied; with --force the rule goes in (and into the configuration file),
    audited as forced, and the kernel's allowlist still lets the address through."""
    paths.config.write_text(f'[safety]\nprotect = ["{lab.ns_ip4}"]\n')
    start_agent(agents, lab, paths, with_config=True)
    _, proc = cli("block", lab.host_if, lab.ns_ip4)
    assert proc.returncode == 2, proc
    msg = one_error_line(proc.stderr)
    assert lab.ns_ip4 in msg and "[safety] protect list" in msg and "--force" in msg, msg
    assert rules_json(lab) == [] and paths.cli_lines() == []
    assert f"block-{lab.ns_ip4}" not in paths.config.read_text()
    assert probe.burst(5) == 5

    _, proc = cli("block", lab.host_if, lab.ns_ip4, "--force", "--comment", "forced on purpose")
    assert proc.returncode == 0, proc
    assert "forced" in proc.stdout
    [rule] = rules_json(lab)
    assert rule["id"] == f"block-{lab.ns_ip4}" and rule["map"] == "BLOCKLIST"
    [line] = paths.cli_lines()
    assert line["change"] == "add" and line["forced"] is True
    assert f"block-{lab.ns_ip4}" in paths.config.read_text()  # saved where the console's edits go
    assert probe.burst(5) == 5  # protected: still passes
    # negative control: an address nothing protects is dropped by the same kind of rule
    _, proc = cli("block", lab.host_if, lab.ns_ip6)
    assert proc.returncode == 0, proc


# --------------------------------------------------------------------------- #
# expiry, listings


def test_a_block_with_a_ttl_expires(lab: netlab.Lab, agents: AgentPool, paths: Paths, probe: Probe) -> None:
    start_agent(agents, lab, paths)
    t0 = time.time()
    _, proc = cli("block", lab.host_if, lab.ns_ip4, "--ttl", "2s")
    assert proc.returncode == 0, proc
    assert "until" in proc.stdout and "(in 2s)" in proc.stdout, proc.stdout
    [rule] = rules_json(lab)
    assert t0 + 2 <= rule["expires_at"] <= time.time() + 2
    assert probe.burst(5) == 0
    # Expiry is checked at each sample (1 s): gone, and passing again, by 2 s + 1 s (+ slack).
    probe.until(passes=True, within=max(0.0, rule["expires_at"] - time.time()) + 2.0)
    assert time.time() >= rule["expires_at"]  # not before its time
    assert rules_json(lab) == []
    deleted = [e for e in paths.audit_lines() if e["change"] == "delete"]
    assert [(e["via"], e["rule"]["id"]) for e in deleted] == [("expiry", f"block-{lab.ns_ip4}")]
    assert f"block-{lab.ns_ip4}" not in (paths.state_dir / f"{lab.host_if}.rules.toml").read_text()


def test_rules_and_alerts_as_json_and_as_text(lab: netlab.Lab, agents: AgentPool, paths: Paths) -> None:
    start_agent(agents, lab, paths)
    # a rule on something the scan below does not come from, with a comment in another script
    blocked = f"{lab.net6.split('::')[0]}:1::/64"
    _, proc = cli("block", lab.host_if, blocked, "--id", "f2b-sshd", "--comment", "fail2ban sshd: ñandú")
    assert proc.returncode == 0, proc
    [rule] = rules_json(lab)
    assert rule["id"] == "f2b-sshd" and rule["src_ip"] == blocked and rule["map"] == "SRC6"
    assert rule["description"] == "fail2ban sshd: ñandú" and rule["hits"] == 0 and rule["expires_at"] is None
    _, proc = cli("rules", lab.host_if)
    assert proc.returncode == 0 and "f2b-sshd" in proc.stdout and "ñandú" in proc.stdout, proc

    _, proc = cli("alerts", lab.host_if, "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout) == [], proc  # negative control
    # a port scan from the namespace: SYNs to 40 ports
    frames = [
        netlab.frame(lab, IP(src=lab.ns_ip4, dst=lab.host_ip4) / TCP(sport=40000, dport=port, flags="S"))
        for port in range(20000, 20040)
    ]
    netlab.send_frames(lab, frames)
    end = time.monotonic() + 10
    while True:
        _, proc = cli("alerts", lab.host_if, "--json")
        assert proc.returncode == 0, proc
        alerts = json.loads(proc.stdout)
        if alerts or time.monotonic() > end:
            break
        time.sleep(0.2)
    [alert] = alerts
    assert alert["detector"] == "port_scan" and alert["src_ip"] == lab.ns_ip4 and alert["state"] == "active"
    assert alert["count"] >= 20 and isinstance(alert["first_seen"], float)
    _, proc = cli("alerts", lab.host_if)
    assert proc.returncode == 0 and "port_scan" in proc.stdout and lab.ns_ip4 in proc.stdout, proc


# --------------------------------------------------------------------------- #
# the console's source sees what the command line does


def test_the_console_sees_and_saves_what_the_command_line_changes(lab: netlab.Lab, paths: Paths, probe: Probe) -> None:
    """The console's live source: a command-line block reaches its rules table at the next poll,
    is said in its status line with the caller's pid, and is saved to the state file."""
    config = ConfigSource(None, lab.host_if, paths.state_dir)
    engine = Engine(
        EngineOptions(iface=lab.host_if, xdp_mode="native", rules=(), store=config.store, audit_log=paths.audit)
    )
    live = LiveSource(engine, config)
    try:
        live.start()
        assert live.info.rules_path == str(config.path)  # where the detail says the operator's rules are saved
        assert stat.S_ISSOCK(os.lstat(socket_path(lab.host_if)).st_mode)
        live.poll(0.05)
        ask(lab.host_if, Block(host(lab.ns_ip4), ttl=3600, comment="from a script"))
        update = live.poll(0.05)
        assert update.rules is not None and [s.rule.id for s in update.rules] == [f"block-{lab.ns_ip4}"]
        assert f"command line: added rule 'block-{lab.ns_ip4}' (uid 0, pid {os.getpid()})" in update.notices
        assert f"block-{lab.ns_ip4}" in config.path.read_text()
        assert probe.burst(5) == 0
        # the write to the state file is the command line's own, not a change to reload
        assert live.poll(0.05).notices == ()
        ask(lab.host_if, Unblock(rule_id=f"block-{lab.ns_ip4}"))
        update = live.poll(0.05)
        assert update.rules == ()
        assert probe.burst(5) == 5
    finally:
        live.close()
        (RUN_DIR / f"{lab.host_if}.lock").unlink(missing_ok=True)
    assert not socket_path(lab.host_if).exists()


# --------------------------------------------------------------------------- #
# fail2ban, for real


FAIL2BAN_ACTION = REPO / "deploy" / "fail2ban" / "ironpost.conf"


class Fail2ban:
    """fail2ban-server in the foreground with a configuration of its own in ``root``: one jail, ``lab``,
    reading ``root/auth.log`` (polling), banning through the shipped action on ``iface``."""

    def __init__(self, root: Path, iface: str) -> None:
        self.root = root
        conf = root / "conf"
        (conf / "action.d").mkdir(parents=True)
        (conf / "filter.d").mkdir()
        shutil.copy(FAIL2BAN_ACTION, conf / "action.d" / "ironpost.conf")
        self.sock = root / "f2b.sock"
        (conf / "fail2ban.conf").write_text(
            f"[Definition]\nloglevel = INFO\nlogtarget = {root}/f2b.log\nsyslogsocket = auto\n"
            f"socket = {self.sock}\npidfile = {root}/f2b.pid\ndbfile = :memory:\n"
        )
        (conf / "filter.d" / "lab.conf").write_text("[Definition]\nfailregex = login failed from <HOST>$\n")
        self.log = root / "auth.log"
        self.log.write_text("")
        (conf / "jail.conf").write_text(
            "[DEFAULT]\nbackend = polling\n\n[lab]\nenabled = true\nfilter = lab\n"
            f"logpath = {self.log}\nmaxretry = 3\nfindtime = 600\nbantime = 3600\n"
            f"action = ironpost[iface={iface}, ironpost={IRONPOST[0]}]\n"
        )
        self.conf = conf
        self.proc = subprocess.Popen(
            ["fail2ban-server", "-f", "-x", "-c", str(conf), "-s", str(self.sock), "-p", str(root / "f2b.pid")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            env=agent_env(),
        )
        end = time.monotonic() + 30
        while self.client("ping").returncode != 0:
            assert self.proc.poll() is None and time.monotonic() < end, self.describe()
            time.sleep(0.2)

    def client(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["fail2ban-client", "-c", str(self.conf), "-s", str(self.sock), *args],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )

    def fail(self, addr: str, times: int = 3) -> None:
        with self.log.open("a") as f:
            for _ in range(times):
                f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} sshd[1]: login failed from {addr}\n")

    def describe(self) -> str:
        log = self.root / "f2b.log"
        return log.read_text()[-4000:] if log.exists() else "(no fail2ban log)"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.client("stop")
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def test_fail2ban_bans_and_unbans_through_the_shipped_action(
    lab: netlab.Lab, agents: AgentPool, paths: Paths, probe: Probe, tmp_path: Path
) -> None:
    """A real fail2ban-server with the action from deploy/ (the README's): three failures in its log
    ban the namespace's address (dropped), a ban by hand covers IPv6, an unban lets the address
    through again, and fail2ban stopping unbans the rest; every change audited via cli."""
    start_agent(agents, lab, paths)
    other6 = str(ipaddress.ip_network(lab.net6)[0x99])  # not ns_ip6: the probe's sentinel must pass
    f2b = Fail2ban(tmp_path / "fail2ban", lab.host_if)
    try:
        assert probe.burst(5) == 5
        f2b.fail(lab.ns_ip4)
        probe.until(passes=False, within=15.0)  # fail2ban polls its log each second, then runs the action
        [rule] = rules_json(lab)
        assert rule["id"] == f"f2b-lab-{lab.ns_ip4}" and rule["description"] == "fail2ban lab", rule
        assert f2b.client("set", "lab", "banip", other6).returncode == 0
        end = time.monotonic() + 10
        while len(rules_json(lab)) < 2:
            assert time.monotonic() < end, f2b.describe()
            time.sleep(0.1)
        assert {r["src_ip"] for r in rules_json(lab)} == {f"{lab.ns_ip4}/32", f"{other6}/128"}
        assert f2b.client("set", "lab", "unbanip", lab.ns_ip4).returncode == 0
        probe.until(passes=True, within=10.0)
        f2b.stop()
        assert f2b.proc.returncode == 0, f2b.describe()
    finally:
        f2b.stop()
    assert rules_json(lab) == [], f2b.describe()
    changes = [(e["change"], e["rule"]["id"]) for e in paths.cli_lines()]
    assert changes == [
        ("add", f"f2b-lab-{lab.ns_ip4}"),
        ("add", f"f2b-lab-{other6}"),
        ("delete", f"f2b-lab-{lab.ns_ip4}"),
        ("delete", f"f2b-lab-{other6}"),
    ]
    assert all(e["uid"] == 0 for e in paths.cli_lines())
