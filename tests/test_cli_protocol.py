"""The command line's protocol and output, without a controller (no root).

Both ends check every field with the same functions: what ``ironpost-tui block`` refuses, the
controller refuses too when a request is written by hand.  Bad input is one line and exit 2.
"""

from __future__ import annotations

import ipaddress
import json
import re

import pytest
from support.common import REPO

from ironpost_tui import cli
from ironpost_tui.ctl import show
from ironpost_tui.ctl.client import request
from ironpost_tui.detectors import Alert
from ironpost_tui.detectors.settings import Detector
from ironpost_tui.engine.control_socket import protocol
from ironpost_tui.engine.control_socket.desk import alert_entry, block_id, blocks_exactly, rule_entry
from ironpost_tui.engine.control_socket.protocol import (
    BadRequest,
    Block,
    Op,
    Request,
    Show,
    Unblock,
    decode_answer,
    decode_request,
    encode_answer,
    encode_failure,
    encode_request,
)
from ironpost_tui.errors import ExitStatus, IronpostError, NotPermitted
from ironpost_tui.model import Action, FilterRule, RuleStatus

NET = ipaddress.ip_network("198.18.0.9/32")


def line(**fields: object) -> bytes:
    return json.dumps({"v": 1, **fields}).encode()


def test_the_rules_table_lines_up_wide_characters_by_the_cells_they_take() -> None:
    """A description of wide characters (two cells each) padded by len() pushed every column after it out of line.
    The control: the same table of narrow text lines up as well."""
    from ironpost_tui.text import cells

    for wide in ("防火墙规则", "abcde"):
        entries = [
            rule_entry(RuleStatus(FilterRule(rule_id, Action.DROP, src_ip=NET), "BLOCKLIST", 7, None))
            for rule_id in (wide, "b")
        ]
        lines = show.rules_table(entries).splitlines()
        starts = {line[: line.index("drop")] for line in lines[1:]}
        assert len({cells(start) for start in starts}) == 1, lines  # ACTION starts in one column on every row
        assert cells(lines[0][: lines[0].index("ACTION")]) == cells(next(iter(starts))), lines
    tabbed = rule_entry(RuleStatus(FilterRule("t", Action.DROP, src_ip=NET, description="a\tb"), "BLOCKLIST", 0, None))
    assert "\t" not in show.rules_table([tabbed]) and "a\\x09b" in show.rules_table([tabbed])  # a tab: 1-8 cells


@pytest.mark.parametrize(
    "req",
    [
        Request(Block(NET)),
        Request(Block(ipaddress.ip_network("2001:db8::/48"), 3600, "f2b-sshd-x", "fail2ban sshd: é", True), "alice"),
        Request(Unblock(addr=NET), None, "198.51.100.7"),
        Request(Unblock(rule_id="f2b-sshd-x")),
        Request(Show(Op.RULES)),
        Request(Show(Op.ALERTS)),
    ],
)
def test_a_request_reads_back_as_it_was_written(req: Request) -> None:
    data = encode_request(req)
    assert data.endswith(b"\n") and data.count(b"\n") == 1 and data.isascii()
    assert decode_request(data.rstrip(b"\n")) == req


BAD_REQUESTS = [
    (b"", "not one line of JSON"),
    (b"\xff\xfe", "not one line of JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b'{"v": 1, "op": "rules", "op": "block"}', "appears twice"),
    (b'{"v": 1, "op": "block", "addr": "198.18.0.9", "ttl": NaN}', "not a number"),
    (b"[" * 10_000, "not one line of JSON"),
    (line(v=2, op="rules"), "protocol version 2"),
    (json.dumps({"op": "rules"}).encode(), "protocol version null"),
    (b'{"v": true, "op": "rules"}', "protocol version true"),
    (line(op="flush"), 'op "flush" is not one of'),
    (line(op="rules", addr="198.18.0.9"), "unknown field"),
    (line(op="block"), "give the address"),
    (line(op="block", addr="198.18.0.999"), "not an IPv4 or IPv6 address"),
    (line(op="block", addr="198.18.0.1/24"), "host bits set"),
    (line(op="block", addr="198.18.0.9/33"), "too long"),
    (line(op="block", addr=9), "addr must be str"),
    (line(op="block", addr="198.18.0.9", ttl=0), "longer than 0s"),
    (line(op="block", addr="198.18.0.9", ttl=-60), "not a duration"),
    (line(op="block", addr="198.18.0.9", ttl=True), "ttl must be int"),
    (line(op="block", addr="198.18.0.9", ttl="1h"), "ttl must be int"),
    (line(op="block", addr="198.18.0.9", ttl=10**12), "not a duration"),
    (line(op="block", addr="198.18.0.9", force="yes"), "force must be bool"),
    (line(op="block", addr="198.18.0.9", id=""), "--id is empty"),
    (line(op="block", addr="198.18.0.9", id="x" * 257), "more than 256"),
    (line(op="block", addr="198.18.0.9", id="a\x1b]0;pwned\x07"), "\\x1b"),
    (line(op="block", addr="198.18.0.9", comment="evil \u202e txt"), "\\u202e"),
    (line(op="block", addr="198.18.0.9", comment="two\nlines"), "\\x0a"),
    (line(op="block", addr="198.18.0.9", comment="a\tb"), "tab"),
    (line(op="block", addr="198.18.0.9", comment="x" * 1025), "more than 1024"),
    (line(op="block", addr="198.18.0.9", user="\x1b[2J"), "\\x1b"),
    (line(op="block", addr="198.18.0.9", ssh_client="nowhere"), "not an IP address"),
    # A zone took any text into the audit's ssh_client, some 15 KB of it (until session 26).
    (line(op="block", addr="198.18.0.9", ssh_client="2001:db8::1%eth0"), "without a zone"),
    (line(op="block", addr="198.18.0.9", ssh_client="2001:db8::1%\x1b]0;x\x07" + "\u202e" * 2000), "without a zone"),
    (line(op="block", addr="198.18.0.9", ssh_client="1" * 46), "not an IP address"),
    (line(op="block", addr="198.18.0.9", comment="a\u00a0b"), "\\xa0, a tab, an unusual space"),
    (line(op="block", addr="198.18.0.9", comment="a\ue000b"), "\\ue000, a tab, an unusual space or a private-use"),
    (line(op="block", addr="198.18.0.9", id="external:198.18.0.9"), "name other tools' BLOCKLIST entries"),
    (line(op="unblock"), "one of them"),
    (line(op="unblock", addr="198.18.0.9", id="x"), "one of them"),
    (b" " * (protocol.MAX_REQUEST_BYTES + 1), "longer than"),
    (line(op="block", addr="198.18.0.9", id="crowdsec"), "reserved"),  # a group's rule_id (metrics)
    (line(op="block", addr="198.18.0.9", id="auto"), "reserved"),
]


@pytest.mark.parametrize(("data", "says"), BAD_REQUESTS, ids=[says for _, says in BAD_REQUESTS])
def test_a_bad_request_is_refused_saying_why(data: bytes, says: str) -> None:
    with pytest.raises(BadRequest) as err:
        decode_request(data)
    assert says in err.value.message
    assert int(err.value.exit_status) == 2
    assert "\n" not in err.value.message and "\x1b" not in err.value.message and "\u202e" not in err.value.message


def test_answers_carry_the_result_or_the_refusal_and_its_exit_status() -> None:
    ok = decode_answer(encode_answer({"rules": []}).rstrip(b"\n"))
    assert ok.ok and ok.result == {"rules": []}
    refused = decode_answer(encode_failure(NotPermitted("refused: uid 65534 is not root")))
    assert (refused.ok, refused.exit, refused.title) == (False, 3, "Not permitted")
    # an exit status the command line does not know, or 0 on a refusal, becomes 1
    for code in (99, 0, True, "2"):
        data = json.dumps({"v": 1, "ok": False, "exit": code, "title": "t", "error": "e"}).encode()
        assert decode_answer(data).exit == 1
    for bad in (b'{"v": 2, "ok": true, "result": {}}', b'{"v": 1, "ok": "yes"}', b"nonsense"):
        with pytest.raises(IronpostError):
            decode_answer(bad)


def test_the_consoles_own_audit_takes_the_ssh_client_as_the_command_line_does(monkeypatch: pytest.MonkeyPatch) -> None:
    from ironpost_tui.rules.audit import Actor

    for value, kept in (("fe80::1%eth0 50000 fe80::2 22", "fe80::1"), ("198.51.100.7 1 2 3", "198.51.100.7"),
                        ("\x1b]0;x\x07 1 2 3", None), ("2001:db8::1%" + "a" * 60, None)):  # fmt: skip
        monkeypatch.setenv("SSH_CONNECTION", value)
        assert Actor.current("console").ssh_client == kept, value


def test_an_ipv6_ssh_client_without_a_zone_and_an_id_near_the_reserved_ones_pass() -> None:
    """The controls of the zone and prefix refusals above."""
    req = decode_request(line(op="block", addr="198.18.0.9", ssh_client="2001:db8:0::1", id="externally-seen"))
    assert req.ssh_client == "2001:db8::1"
    assert isinstance(req.command, Block) and req.command.rule_id == "externally-seen"


def test_what_the_caller_says_of_itself_is_kept_only_when_it_passes() -> None:
    env = {"SUDO_USER": "alice", "USER": "root", "SSH_CONNECTION": "198.51.100.7 50000 198.51.100.1 22"}
    req = request(Show(Op.RULES), env)
    assert (req.user, req.ssh_client) == ("alice", "198.51.100.7")
    assert decode_request(encode_request(req)) == req
    link_local = request(Show(Op.RULES), {"SSH_CONNECTION": "fe80::1%eth0 50000 fe80::2 22"})
    assert link_local.ssh_client == "fe80::1" and decode_request(encode_request(link_local)) == link_local
    # a name with an escape sequence, a client that is no address: left out, not refused
    req = request(Show(Op.RULES), {"USER": "\x1b[31mroot", "SSH_CLIENT": "nowhere 1 2"})
    assert (req.user, req.ssh_client) == (None, None)
    assert decode_request(encode_request(req)) == req


def test_a_block_is_named_after_its_address_as_the_console_names_it() -> None:
    assert block_id(NET) == "block-198.18.0.9"
    assert block_id(ipaddress.ip_network("198.18.4.0/24")) == "block-198.18.4.0/24"
    assert block_id(ipaddress.ip_network("2001:db8::1")) == "block-2001:db8::1"
    rule = FilterRule("r", Action.DROP, src_ip=NET)
    assert blocks_exactly(rule, NET)
    assert not blocks_exactly(FilterRule("r", Action.MONITOR, src_ip=NET), NET)
    assert not blocks_exactly(FilterRule("r", Action.DROP, src_ip=NET, dst_port=22), NET)
    assert not blocks_exactly(rule, ipaddress.ip_network("198.18.0.8/31"))


def test_rules_and_alerts_are_json_and_text_with_hostile_text_escaped() -> None:
    evil = "x\x1b]52;c;cHduZWQ=\x07\u202e"
    rule = FilterRule(evil, Action.DROP, src_ip=NET, description=evil, expires_at=2_000_000_000.0)
    entry = rule_entry(RuleStatus(rule, "BLOCKLIST", 7, None))
    assert entry["map"] == "BLOCKLIST" and entry["hits"] == 7 and entry["src_ip"] == "198.18.0.9/32"
    text = show.rules_table([entry], now=2_000_000_000.0 - 90)
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert "\\x1b]52;c;cHduZWQ=\\x07\\u202e" in text and "in 1m30s" in text and "src 198.18.0.9" in text
    js = show.as_json([entry])
    assert "\x1b" not in js and "\u202e" not in js and json.loads(js)[0]["id"] == evil
    alert = Alert(3, Detector.PORT_SCAN, "medium", "198.18.0.9", "eth0", 40, 40, 60.0, 1.0, 2.0, evil)
    a = alert_entry(alert)
    assert a["detector"] == "port_scan" and a["state"] == "active"
    assert a["src_ip"] == "198.18.0.9" and a["dst_ip"] is None
    assert json.loads(show.as_json([a]))[0]["summary"] == evil
    assert "\x1b" not in show.alerts_table([a]) and "port_scan" in show.alerts_table([a])
    assert show.rules_table([]) == "no rules" and show.alerts_table([]) == "no alerts"


@pytest.mark.parametrize(
    "argv",
    [
        ["block", "eth0"],
        ["block", "eth0", "198.18.0.999"],
        ["block", "eth0", "198.18.0.1/24"],
        ["block", "eth0", "198.18.0.9", "--ttl", "0s"],
        ["block", "eth0", "198.18.0.9", "--ttl", "banana"],
        ["block", "eth0", "198.18.0.9", "--id", ""],
        ["block", "eth0", "198.18.0.9", "--comment", "\x1b[2J"],
        ["block", "eth0", "198.18.0.9", "--bogus"],
        ["block", "../etc", "198.18.0.9"],
        ["unblock", "eth0"],
        ["unblock", "eth0", "198.18.0.9", "--id", "x"],
        ["rules", "eth0", "extra"],
        ["alerts", "a:b"],
    ],
)
def test_bad_command_lines_are_one_line_and_exit_2_before_anything_is_sent(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ironpost-tui: "), err
    assert "\x1b" not in err


def test_the_readme_shows_the_fail2ban_action_that_is_shipped() -> None:
    """deploy/fail2ban/ironpost.conf, which test_cli_live.py runs under a real fail2ban, is the README's."""
    action = (REPO / "deploy" / "fail2ban" / "ironpost.conf").read_text()
    blocks = re.findall(r"```ini\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    assert action in blocks
    assert "actionban = <ironpost> block <iface> <ip>" in action
    assert "actionunban = <ironpost> unblock <iface>" in action


def test_the_readme_lists_every_exit_code() -> None:
    readme = (REPO / "README.md").read_text()
    table = readme.split("### Exit codes", 1)[1].split("\n## ", 1)[0]
    codes = {int(m) for m in re.findall(r"^\| (\d+) \|", table, re.M)}
    assert codes == {int(s) for s in ExitStatus}
    assert re.search(r"^\| 15 \| .*no ironpost-tui controls the interface", table, re.M)
