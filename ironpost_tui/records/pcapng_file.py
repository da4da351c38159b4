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


class PcapngFile:
    """An open pcapng file taking packets one by one; close() to finish it."""

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
            self._writer = FileWriter(self._f, self._shb)
        self.size = self._f.tell()

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
        now = self._f.tell()
        written, self.size = now - self.size, now
        return written

    def flush(self) -> None:
        """What was written so far, on its way to the disk (readable by others while the capture runs)."""
        self._f.flush()

    def close(self) -> None:
        self._f.flush()
        self._f.close()
