"""A capture as a pcapng file: one Ethernet interface, nanosecond timestamps, a comment per packet.

Written with python-pcapng (2.1.1: a maintained reader and writer of every standard block, which
checks each option's type as it writes it): the interface's name, ``if_tsresol`` 9 and each
packet's comment are options it encodes, not bytes packed here.  dpkt 1.9.8's pcapng Writer was
the first choice, but its enhanced packet block writes the captured length as the packet's
length, so a copy cut at the snap length would lose the length it had on the wire.  The file
itself is created by ironpost_tui.files (exclusive, no-follow, 0600, given to the user who ran
sudo).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from pcapng import FileWriter, blocks

from ironpost_tui import files
from ironpost_tui.version import __version__

LINKTYPE_ETHERNET = 1
TSRESOL_NS = b"\x09"  # if_tsresol: 10^-9 s


def _remove_if_ours(path: Path, made: os.stat_result) -> None:
    """Remove ``path`` if it is still the file made (not one swapped in since)."""
    with contextlib.suppress(OSError):
        st = os.lstat(path)
        if (st.st_dev, st.st_ino) == (made.st_dev, made.st_ino):
            os.unlink(path)


class _Pending:
    """The stream python-pcapng writes its blocks into: their bytes, kept until PcapngFile.flush()."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, b: bytes) -> int:
        self.data += b
        return len(b)


class PcapngFile:
    """An open pcapng file taking packets one by one; flush() puts them in the file, close() finishes it.

    The file only ever ends at a block's end: a flush the disk refuses (ENOSPC, EIO) cuts the file back to
    what the last flush left, every block whole, and nothing is written after it (tcpdump reads the file
    whole).  Written through a buffered file until session 29, a full disk left a block cut anywhere, and
    the capture's rings and file open."""

    def __init__(
        self,
        path: Path,
        iface: str,
        snaplen: int,
        owner: files.Owner | None,
        check_dir: Callable[[os.stat_result], str | None] | None = None,
    ) -> None:
        # A new file only, in the directory check_dir judged through the descriptor it is made with.
        self._f: BinaryIO = files.create_new(path, owner=owner, check_dir=check_dir)
        self._made = os.fstat(self._f.fileno())
        self._pending = _Pending()
        self._shb = blocks.SectionHeader(options={"shb_userappl": f"ironpost-tui {__version__}"})
        self._shb.new_member(
            blocks.InterfaceDescription,
            link_type=LINKTYPE_ETHERNET,
            snaplen=snaplen,
            options={"if_name": iface, "if_tsresol": TSRESOL_NS},
        )
        with warnings.catch_warnings():
            # python-pcapng 2.1.1 declares if_tsresol without a type and warns when encoding it; the
            # value is the one byte the format wants.
            warnings.simplefilter("ignore", DeprecationWarning)
            self._writer = FileWriter(self._pending, self._shb)
        self.on_disk = 0  # bytes the file holds: whole blocks
        self.packets = 0  # packets written, those not flushed yet included
        self.packets_on_disk = 0
        self.failed: OSError | None = None  # the flush the disk refused: nothing is written after it
        self.size = len(self._pending.data)  # bytes written, those not flushed yet included
        try:
            self.flush()  # the header: a file the disk refuses fails before any packet
        except OSError:
            self._f.close()
            _remove_if_ours(path, self._made)  # nothing written: no empty file left to refuse the next try
            raise

    def write(self, ts_ns: int, data: bytes, pkt_len: int, comment: str) -> int:
        """One packet (``data``: its first bytes, ``pkt_len``: its length on the wire); returns bytes written."""
        epb = self._shb.new_member(
            blocks.EnhancedPacket,
            interface_id=0,
            timestamp_high=ts_ns >> 32,
            timestamp_low=ts_ns & 0xFFFFFFFF,
            packet_data=data,
            packet_len=pkt_len,
            options={"opt_comment": comment},
        )
        self._writer.write_block(epb)
        now = self.on_disk + len(self._pending.data)
        written, self.size = now - self.size, now
        self.packets += 1
        return written

    def flush(self) -> None:
        """What was written so far, into the file (readable by others while the capture runs).  OSError when
        the disk refuses it: the file is cut back to its last whole block, and every later write is lost
        (``failed``)."""
        if self.failed is not None:
            raise self.failed
        data = self._pending.data
        fd = self._f.fileno()
        done = 0
        try:
            with memoryview(data) as view:
                while done < len(data):
                    done += os.write(fd, view[done:])
        except BaseException as exc:  # a part may be in the file: never written again after it
            self.failed = exc if isinstance(exc, OSError) else OSError(f"interrupted: {exc!r}")
            with contextlib.suppress(OSError):
                os.ftruncate(fd, self.on_disk)
            raise
        self.on_disk += len(data)
        self.packets_on_disk = self.packets
        data.clear()

    def close(self) -> None:
        """Flush and close; the file is closed whatever the flush met (its OSError is raised after)."""
        try:
            if self.failed is None:
                self.flush()
        finally:
            self._f.close()
