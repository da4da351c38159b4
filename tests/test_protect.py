"""Anti-lockout: finding the addresses to protect, and refusing rules that hit them."""

from __future__ import annotations

from pathlib import Path

from support.common import net

from ironpost_tui.model import Action, FilterRule
from ironpost_tui.rules import protect


def test_ssh_client_from_environment() -> None:
    env = {"SSH_CONNECTION": "198.18.9.9 52144 198.18.0.1 22"}
    assert protect.ssh_clients_from_env(env) == {net("198.18.9.9/32")}
    assert protect.ssh_clients_from_env({"SSH_CLIENT": "2001:db8::7 4000 22"}) == {net("2001:db8::7/128")}
    assert protect.ssh_clients_from_env({}) == set()


def _fake_proc(tmp_path: Path) -> Path:
    proc = tmp_path / "proc"
    (proc / "net").mkdir(parents=True)
    sshd = proc / "4242"
    (sshd / "fd").mkdir(parents=True)
    (sshd / "comm").write_text("sshd\n")
    (sshd / "fd" / "3").symlink_to("socket:[777]")
    other = proc / "99"
    (other / "fd").mkdir(parents=True)
    (other / "comm").write_text("curl\n")
    (other / "fd" / "3").symlink_to("socket:[888]")
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    # 198.18.0.1:22 <- 198.18.9.9:52144 established (sshd); 198.18.0.1:80 <- 198.18.5.5 (curl's)
    (proc / "net" / "tcp").write_text(
        header
        + "   0: 010012C6:0016 090912C6:CBB0 01 00000000:00000000 00:00000000 00000000     0        0 777 1\n"
        + "   1: 010012C6:0050 050512C6:CBB1 01 00000000:00000000 00:00000000 00000000     0        0 888 1\n"
        + "   2: 010012C6:0016 070712C6:CBB2 0A 00000000:00000000 00:00000000 00000000     0        0 777 1\n"
    )
    # 2001:db8::1:22 <- 2001:db8::7 established (sshd), as /proc prints it: host-order words
    (proc / "net" / "tcp6").write_text(
        header + "   0: B80D0120000000000000000001000000:0016 B80D0120000000000000000007000000:CBB3 01 "
        "00000000:00000000 00:00000000 00000000     0        0 777 1\n"
    )
    return proc


def test_ssh_clients_from_sshd_sockets(tmp_path: Path) -> None:
    found = protect.ssh_clients_from_sshd(_fake_proc(tmp_path))
    assert found == {net("198.18.9.9/32"), net("2001:db8::7/128")}


def test_gather_labels_and_dedupes() -> None:
    env = {"SSH_CONNECTION": "198.18.9.9 1 198.18.0.1 22"}
    got = protect.gather([net("198.18.9.9/32"), net("198.18.100.0/24")], env=env, include_host=False)
    by_net = {p.network: p.reason for p in got}
    assert by_net == {
        net("198.18.9.9/32"): protect.REASON_SSH_CLIENT,
        net("198.18.100.0/24"): protect.REASON_PROTECT_LIST,
    }


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
