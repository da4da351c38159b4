"""``[crowdsec]``: defaults, every key, each wrong value one line and nothing taken; an inline api_key
refused in a file its group or others can read; the credentials files read with the configuration's ownership and
mode checks (engine/crowdsec/lapi.py); the decision stream's hostile input."""

from __future__ import annotations

import gc
import json
import os
from pathlib import Path

import pytest

from ironpost_tui.config import settings as config
from ironpost_tui.config.check import ConfigError
from ironpost_tui.config.crowdsec import CrowdSecSettings, Scope
from ironpost_tui.engine.crowdsec import lapi, stream_json
from ironpost_tui.engine.crowdsec.decisions import StreamParse, as_decision, go_duration, parse_stream, pulled_network

NOW = 1_700_000_000.0
BASE = '[crowdsec]\nlapi_url = "http://127.0.0.1:8080/"\napi_key_file = "/etc/ironpost/crowdsec.key"\n'


def load(text: str) -> CrowdSecSettings:
    return config.loads(text, "t.toml", now=NOW).crowdsec


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config.loads(text, "t.toml", now=NOW)
    return info.value.message.splitlines()


def test_absent_means_off_and_defaults() -> None:
    assert load("") == CrowdSecSettings()
    assert not load("").enabled
    s = load(BASE)
    assert s.enabled and s.url == "http://127.0.0.1:8080/" and s.poll_interval == 10.0
    assert s.scopes == (Scope.IP, Scope.RANGE) and not s.push_alerts and s.ban_duration == 4 * 3600


def test_every_key() -> None:
    s = load(
        BASE
        + 'poll_interval = 1\ntimeout = 2\nscopes = ["ip"]\norigins = ["cscli", "crowdsec"]\n'
        + 'scenarios = ["crowdsecurity/ssh-bf"]\nca_file = "/etc/ironpost/lapi-ca.pem"\npush_alerts = true\n'
        + 'machine_credentials_file = "/etc/ironpost/machine.yaml"\nban_duration = "30m"\n'
    )
    assert (s.poll_interval, s.timeout, s.scopes) == (1.0, 2.0, (Scope.IP,))
    assert s.origins == ("cscli", "crowdsec") and s.scenarios == ("crowdsecurity/ssh-bf",)
    assert s.ca_file == Path("/etc/ironpost/lapi-ca.pem") and s.push_alerts and s.ban_duration == 1800


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ('lapi_url = "ftp://x"\n', "is not a LAPI address"),
        ('lapi_url = "http://a b/"\n', "is not a LAPI address"),
        ('lapi_url = "http://198.18.0.9:8080/"\n', "in clear over the network"),
        ('lapi_url = "http://lapi.example:8080/"\n', "in clear over the network"),
        ('lapi_url = "http://[2001:db8::9]:8080/"\n', "in clear over the network"),
        ("poll_interval = 0\n", "out of range"),
        ("poll_interval = nan\n", "out of range"),
        ('scopes = ["country"]\n', "must list one or both of ip, range"),
        ("scopes = []\n", "must list one or both of ip, range"),
        ('origins = ["a\\u0000b"]\n', "each must be a name"),
        ('api_key_file = "relative.key"\n', "is not an absolute file path"),
        ("push_alerts = true\n", "machine_credentials_file is missing"),
        ('ban_duration = "forever"\n', "ban_duration"),
        ("lapi_urll = 1\n", "did you mean 'lapi_url'?"),
    ],
)
def test_wrong_values_one_line_each(extra: str, says: str) -> None:
    key = extra.split(" ", 1)[0]
    text = "".join(line + "\n" for line in BASE.splitlines() if not line.startswith(key + " "))
    errors = errors_of(text + extra)
    assert len(errors) == 1 and says in errors[0], errors


def test_plain_http_only_to_this_host() -> None:
    """The controls of the refusals above: https anywhere, http to a loopback address or localhost."""
    for url in ("https://lapi.example:8080/", "http://127.0.0.1:8080/", "http://[::1]:8080/", "http://localhost/"):
        text = "".join(line + "\n" for line in BASE.splitlines() if not line.startswith("lapi_url "))
        assert load(text + f'lapi_url = "{url}"\n').lapi_url == url


def test_missing_url_and_key() -> None:
    errors = errors_of("[crowdsec]\npoll_interval = 5\n")
    assert any("lapi_url is missing" in e for e in errors) and any("api_key_file is missing" in e for e in errors)
    assert load("[crowdsec]\nenabled = false\n").enabled is False


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_inline_key_refused_in_a_file_its_group_or_others_can_read(tmp_path: Path, mode: int) -> None:
    """0640 as well as 0644: the key files' rule (a group-readable configuration gave every member of its group
    the bouncer's key; an attacker's review of session 29).  The control: 0600 loads."""
    path = tmp_path / "ironpost.toml"
    path.write_text('[crowdsec]\nlapi_url = "http://127.0.0.1:8080/"\napi_key = "abcdefgh12345678"\n')
    path.chmod(mode)
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert "its group or others can read" in info.value.message
    path.chmod(0o600)
    assert config.load(path).crowdsec.api_key == "abcdefgh12345678"


def test_key_file_checked_like_the_configuration(tmp_path: Path) -> None:
    key = tmp_path / "k"
    key.write_text("sekrit-key-123\n")
    key.chmod(0o600)
    settings = CrowdSecSettings(enabled=True, lapi_url="http://127.0.0.1:1/", api_key_file=key)
    assert lapi.bouncer_key(settings) == "sekrit-key-123"
    key.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by its group or others"):
        lapi.bouncer_key(settings)
    key.chmod(0o622)
    with pytest.raises(ConfigError, match="writable"):
        lapi.bouncer_key(settings)
    key.chmod(0o600)
    key.write_text("")
    with pytest.raises(ConfigError, match="holds no bouncer key"):
        lapi.bouncer_key(settings)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(ConfigError, match="not a regular file"):  # and never blocks
        lapi.bouncer_key(CrowdSecSettings(api_key_file=fifo))
    with pytest.raises(ConfigError, match="No such file"):
        lapi.bouncer_key(CrowdSecSettings(api_key_file=tmp_path / "absent"))


def test_machine_credentials(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("url: http://127.0.0.1:8080\nlogin: host-a\npassword: pw\n")
    path.chmod(0o600)
    settings = CrowdSecSettings(machine_credentials_file=path)
    assert lapi.machine_credentials(settings) == ("host-a", "pw")
    for bad in ("login: [1]\n", "- a\n", "{{{", "login: a\n"):
        path.write_text(bad)
        with pytest.raises(ConfigError):
            lapi.machine_credentials(settings)


def test_go_durations() -> None:
    assert go_duration("59m59.5s") == pytest.approx(3599.5)
    assert go_duration("-51.716493ms") == pytest.approx(-0.051716493)
    assert go_duration("1h2m3s") == 3723
    for bad in ("", "5", "1d", "s", "1h-2m", "9" * 100 + "x"):
        with pytest.raises(ValueError):
            go_duration(bad)


def test_stream_hostile_input() -> None:
    s = CrowdSecSettings()
    ok = {"id": 1, "value": "198.18.0.2", "scope": "Ip", "type": "ban", "duration": "1m", "origin": "cscli",
          "scenario": "x"}  # fmt: skip
    bad = [
        None,
        1,
        "x",
        {},
        {**ok, "value": "0.0.0.0/0"},  # an Ip that is a range (cscli import's), and far too broad
        {**ok, "scope": "Range", "value": "198.18.0.1/24"},  # host bits set
        {**ok, "value": "not-an-ip"},
        {**ok, "duration": "forever"},
        {**ok, "id": "1"},
        {**ok, "value": "1" * 10_000},
        {**ok, "scope": "Range", "value": "0.0.0.0/1"},  # half the Internet
        {**ok, "scope": "Range", "value": "198.0.0.0/15"},  # broader than /16
        {**ok, "scope": "Range", "value": "2000::/3"},
        {**ok, "scope": "Range", "value": "2001:d00::/31"},  # broader than /32
        {**ok, "duration": "9" * 400 + "h"},  # infinite once a float
        # Zones: ip_network() read "2001:db8::1%a" and "%b" as two networks placing one SRC6 entry (the first's
        # removal took the second's drop, the second's raised; until session 26); an IPv4-mapped address, which
        # no IPv4 packet is matched as.
        {**ok, "value": "2001:db8::1%a"},
        {**ok, "scope": "Range", "value": "2001:db8::%b/64"},
        {**ok, "value": "::ffff:198.18.0.3"},
    ]
    delta = parse_stream({"new": [ok, *bad], "deleted": None}, s)
    assert [as_decision(p).value for p in delta.new] == ["198.18.0.2"] and delta.malformed == len(bad)
    skipped = parse_stream({"new": [{**ok, "type": "captcha"}, {**ok, "scope": "Country", "value": "FR"}]}, s)
    assert skipped.new == () and skipped.malformed == 1 and skipped.skipped == 1
    only = CrowdSecSettings(origins=("crowdsec",), scopes=(Scope.RANGE,))
    assert parse_stream({"new": [ok]}, only).skipped == 1
    # A prefix under scope Ip (what cscli 1.4's import makes of a CSV's ranges) is that range.
    (as_range,) = parse_stream({"new": [{**ok, "value": "198.18.0.0/24"}]}, s).new
    assert as_decision(as_range).scope is Scope.RANGE and as_decision(as_range).value == "198.18.0.0/24"
    # The narrowest refused ranges' neighbours are taken (the controls): /16 and /32.
    wide = [{**ok, "scope": "Range", "value": v} for v in ("198.18.0.0/16", "2001:db8::/32")]
    (v6,) = parse_stream({"new": [{**ok, "value": "2001:db8::1"}]}, s).new  # the zone's control
    assert as_decision(v6).value == "2001:db8::1"
    assert [as_decision(p).value for p in parse_stream({"new": wide}, s).new] == ["198.18.0.0/16", "2001:db8::/32"]
    # Durations: a huge one is a year at most; a new decision already expired is skipped; a deleted
    # one with a negative duration (expired, as the LAPI says it) is still a deletion.
    (huge,) = parse_stream({"new": [{**ok, "duration": "99999999h"}]}, s).new
    assert as_decision(huge).seconds == 365 * 86400
    expired = parse_stream({"new": [{**ok, "duration": "-5s"}], "deleted": [{**ok, "duration": "-5s"}]}, s)
    assert expired.new == () and expired.skipped == 1
    assert [as_decision(p).value for p in expired.deleted] == ["198.18.0.2"]
    for body in ([], None, {"new": "x"}, {"deleted": 5}):
        with pytest.raises(ValueError):
            parse_stream(body, s)
    # The LAPI client's way, each entry judged as it is decoded, finds the same.
    text = json.dumps({"new": [ok, *bad], "deleted": [ok, None]})
    parse = StreamParse(s)
    assert parse.delta(stream_json.loads(text, parse.element)) == parse_stream(json.loads(text), s)


def test_pulled_decisions_leave_the_collector_alone() -> None:
    """A pull of many decisions keeps nothing the cyclic collector walks: each checked entry is a tuple of
    strings and numbers, untracked once a young collection has seen it, so 100,000 of them never make a
    full collection (which holds the interpreter lock while the tick waits) longer.  Control: the
    Decision the tick makes of one is tracked."""
    s = CrowdSecSettings()
    entries = [
        {
            "id": i,
            "value": f"198.18.{i // 256}.{i % 256}",
            "scope": "Ip",
            "duration": "1h",
            "origin": "cscli",
            "scenario": "x",
            "type": "ban",
        }  # fmt: skip
        for i in range(2000)
    ]
    entries += [{**entries[0], "id": 9000 + i, "scope": "Range", "value": f"2001:db8:{i:x}::/64"} for i in range(100)]
    delta = parse_stream({"new": entries, "deleted": None}, s)
    assert len(delta.new) == 2100
    gc.collect()
    assert not any(gc.is_tracked(p) for p in delta.new)
    made = as_decision(delta.new[-1])
    assert gc.is_tracked(made)
    assert str(made.network) == pulled_network(delta.new[-1]) == "2001:db8:63::/64" and made.scope is Scope.RANGE
    assert as_decision(delta.new[5]).value == "198.18.0.5"
