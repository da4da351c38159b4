"""capture --filter: the events filter's syntax, only what the kernel can evaluate (no root); and -w's
directory judged through the descriptor the file is made with (root)."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import pytest

from ironpost_tui import files
from ironpost_tui.kernel.capture import CaptureFilter
from ironpost_tui.records.capture import Capture, Limits, OutputRefused, check_output
from ironpost_tui.records.capture_expr import CaptureExpression
from ironpost_tui.records.pcapng_file import PcapngFile


def test_the_kernel_fields_are_taken() -> None:
    e = CaptureExpression.parse("src:198.18.0.7 dst:198.18.0.0/24 port:53 proto:udp rule:block-x")
    assert e.src == ipaddress.ip_network("198.18.0.7/32") and e.dst == ipaddress.ip_network("198.18.0.0/24")
    assert (e.port, e.protocol, e.rule_id) == (53, 17, "block-x")
    six = CaptureExpression.parse("SRC:2001:db8::/32 proto:58")
    assert six.src == ipaddress.ip_network("2001:db8::/32") and six.protocol == 58 and six.dst is None
    assert CaptureExpression.parse("port:22") == CaptureExpression(port=22)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "empty"),
        ("198.18.0.7", "not words"),
        ("flood", "not words"),
        ("sport:53", "port: (either side)"),
        ("dport:53", "port: (either side)"),
        ("verdict:drop", "cannot select by verdict"),
        ("srcip:198.18.0.7", "unknown key"),
        ("src:", "give a value"),
        ("src:nonsense", "not an address"),
        ("src:198.18.0.1/33", "not an address"),
        ("port:70000", "0-65535"),
        ("port:0", "any port"),
        ("port:٣", "0-65535"),  # a digit, but not an ASCII one
        ("proto:bogus", "a protocol is"),
        ("proto:0", "any protocol"),
        ("src:198.18.0.1 src:198.18.0.2", "given twice"),
        ("src:198.18.0.1 dst:2001:db8::1", "different IP versions"),
        ("port:1 " * 600, "at most 1024"),
    ],
)
def test_what_the_kernel_cannot_evaluate_is_one_line(text: str, says: str) -> None:
    with pytest.raises(ValueError) as err:
        CaptureExpression.parse(text)
    message = str(err.value)
    assert says in message and "\n" not in message


@pytest.mark.root
def test_the_directory_checked_is_the_one_written_in(tmp_path: Path, nobodys_dir: Path) -> None:
    """capture -w under sudo: the directory is judged (writable by the sudo user) through the descriptor
    the file is made with, so swapping it for a link to a root-owned directory after check_output, before
    the file is made, writes nothing there.  The control: the same path, unswapped, gets the file, 0600,
    the user's; an existing name is never replaced."""
    nobody = files.Owner(65534, 65534)
    user_dir = nobodys_dir / "d"
    user_dir.mkdir()
    os.chown(user_dir, 65534, 65534)
    root_dir = tmp_path / "etc"
    root_dir.mkdir(mode=0o755)
    cap = Capture("lo", CaptureFilter(port=1), user_dir / "x.pcapng", Limits(None, 1.0, 1024), {}, nobody)

    assert check_output(user_dir / "x.pcapng", nobody) == user_dir / "x.pcapng"
    PcapngFile(user_dir / "x.pcapng", "lo", 256, nobody, cap._check_dir).close()
    st = (user_dir / "x.pcapng").stat()
    assert (st.st_uid, st.st_mode & 0o777) == (65534, 0o600)
    with pytest.raises(FileExistsError):
        PcapngFile(user_dir / "x.pcapng", "lo", 256, nobody, cap._check_dir)

    assert check_output(user_dir / "shadow", nobody) == user_dir / "shadow"  # checked, then swapped:
    os.rename(user_dir, nobodys_dir / "d.old")
    os.symlink(root_dir, user_dir)
    with pytest.raises(PermissionError, match="not writable by uid 65534"):
        PcapngFile(user_dir / "shadow", "lo", 256, nobody, cap._check_dir)
    assert os.listdir(root_dir) == []


@pytest.mark.root
def test_a_directory_the_sudo_user_cannot_reach_is_refused(tmp_path: Path, nobodys_dir: Path) -> None:
    """capture -w under sudo into a directory the user owns but cannot reach (inside root's 0700 tmp_path):
    not a place the user could have put a file.  The control: the same directory where the user can reach it."""
    nobody = files.Owner(65534, 65534)
    hidden = tmp_path / "mine"
    hidden.mkdir()
    os.chown(hidden, 65534, 65534)
    with pytest.raises(OutputRefused, match="out of uid 65534's reach"):
        check_output(hidden / "x.pcapng", nobody)
    shown = nobodys_dir / "mine"
    shown.mkdir()
    os.chown(shown, 65534, 65534)
    assert check_output(shown / "x.pcapng", nobody) == shown / "x.pcapng"


def test_a_flush_cut_short_by_anything_leaves_only_whole_blocks_and_writes_no_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flush whose write was cut (part of the blocks written, then an interrupt that is no OSError): the file is
    cut back to the last whole block and nothing is written after it, close() included (until then the part
    written was written again whole by close(): a torn block in the middle; a review of session 29)."""
    import os as os_mod

    from dpkt import pcapng as dpkt_pcapng

    path = tmp_path / "cut.pcapng"
    out = PcapngFile(path, "lo", 256, None)
    out.write(1, b"\x00" * 60, 60, "first")
    out.flush()
    whole = path.stat().st_size
    assert whole == out.on_disk and out.packets_on_disk == 1
    out.write(2, b"\x01" * 60, 60, "second")
    real_write = os_mod.write
    calls: list[int] = []

    def cut(fd: int, data: bytes | memoryview) -> int:
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, bytes(data[:20]))  # a part...
        raise KeyboardInterrupt  # ...then an interrupt

    monkeypatch.setattr("ironpost_tui.records.pcapng_file.os.write", cut)
    with pytest.raises(KeyboardInterrupt):
        out.flush()
    monkeypatch.setattr("ironpost_tui.records.pcapng_file.os.write", real_write)
    assert out.failed is not None and path.stat().st_size == whole
    out.close()  # writes nothing more
    assert path.stat().st_size == whole
    with path.open("rb") as f:
        packets = list(dpkt_pcapng.Reader(f))
    assert [bytes(p) for _, p in packets] == [b"\x00" * 60]
