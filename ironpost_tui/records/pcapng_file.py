"""A capture as a pcapng file: one Ethernet interface, nanosecond timestamps, a comment per packet.

Written with dpkt's pcapng Writer (dpkt 1.9.8: a maintained packet library, already the usual
reader/writer of pcap files in Python; its Writer takes our own interface description and enhanced
packet blocks, so the interface name, if_tsresol and the comments are options, not hand-packed
bytes).  The file itself is created by ironpost_tui.files (exclusive, no-follow, 0600, given to the
user who ran sudo).
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from dpkt import pcapng

from ironpost_tui import files

TSRESOL_NS = 9  # if_tsresol: 10^-9 s


class PcapngFile:
    """An open pcapng file taking packets one by one; close() to finish it."""

    def __init__(self, path: Path, iface: str, snaplen: int, owner: files.Owner | None) -> None:
        self._f: BinaryIO = files.create_replacing(path, owner=owner)
        idb = pcapng.InterfaceDescriptionBlockLE(
            snaplen=snaplen,
            linktype=pcapng.DLT_EN10MB,
            opts=[
                pcapng.PcapngOptionLE(code=pcapng.PCAPNG_OPT_IF_NAME, data=iface.encode()),
                pcapng.PcapngOptionLE(code=pcapng.PCAPNG_OPT_IF_TSRESOL, data=bytes([TSRESOL_NS])),
                pcapng.PcapngOptionLE(code=pcapng.PCAPNG_OPT_ENDOFOPT),
            ],
        )
        self._writer = pcapng.Writer(self._f, snaplen=snaplen, idb=idb)
        self.size = self._f.tell()

    def write(self, ts_ns: int, data: bytes, pkt_len: int, comment: str) -> int:
        """One packet (``data``: its first bytes, ``pkt_len``: its length on the wire); returns bytes written."""
        epb = pcapng.EnhancedPacketBlockLE(
            iface_id=0,
            ts_high=ts_ns >> 32,
            ts_low=ts_ns & 0xFFFFFFFF,
            caplen=len(data),
            pkt_len=pkt_len,
            pkt_data=data,
            opts=[
                pcapng.PcapngOptionLE(code=pcapng.PCAPNG_OPT_COMMENT, data=comment.encode()),
                pcapng.PcapngOptionLE(code=pcapng.PCAPNG_OPT_ENDOFOPT),
            ],
        )
        block = bytes(epb)
        self._f.write(block)
        self.size += len(block)
        return len(block)

    def close(self) -> None:
        self._f.flush()
        self._f.close()
