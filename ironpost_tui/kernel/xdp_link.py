"""Attaching the program to an interface through a BPF link.

A link detaches when its last fd closes, even on kill -9, so enforcement
lives exactly as long as the process unless the link is pinned on purpose
(--persist).  BCC's attach_xdp is a netlink attach that outlives the process:
we never use it.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from ironpost_tui.errors import ModeUnsupported, XdpBusy
from ironpost_tui.kernel import libbpf
from ironpost_tui.kernel.libbpf import XdpMode

MODE_FLAGS = {
    XdpMode.NATIVE: libbpf.XDP_FLAGS_DRV_MODE,
    XdpMode.SKB: libbpf.XDP_FLAGS_SKB_MODE,
    XdpMode.OFFLOAD: libbpf.XDP_FLAGS_HW_MODE,
}
# A configured mode: "auto" tries native, then skb.
XdpChoice = XdpMode | Literal["auto"]


def xdp_choice(name: str) -> XdpChoice:
    """A configured mode by name ("hw" is the seed's name for offload); ValueError if unknown."""
    if name == "auto":
        return "auto"
    return XdpMode("offload" if name == "hw" else name)


PROG_NAME = "ironpost_xdp"


@dataclass(frozen=True)
class Occupant:
    """An XDP program found on an interface."""

    mode: XdpMode
    prog_id: int
    name: str
    link_id: int | None  # None: attached through netlink, not a link

    @property
    def is_ironpost(self) -> bool:
        return self.name == PROG_NAME


def occupants(ifindex: int) -> list[Occupant]:
    """Every XDP program attached to ``ifindex``, with the link holding it if any."""
    found = []
    attached = libbpf.xdp_query(ifindex)
    links = _xdp_links(ifindex)
    for mode, prog_id in attached.prog_ids:
        try:
            fd = libbpf.prog_fd_by_id(prog_id)
        except libbpf.BpfCallError:
            continue
        try:
            name = libbpf.prog_info(fd).name
        finally:
            os.close(fd)
        found.append(Occupant(mode, prog_id, name, links.get(prog_id)))
    return found


def _xdp_links(ifindex: int) -> dict[int, int]:
    """prog id -> link id for the XDP links on ``ifindex``."""
    out = {}
    for link_id in libbpf.link_ids():
        try:
            fd = libbpf.link_fd_by_id(link_id)
        except libbpf.BpfCallError:
            continue
        try:
            info = libbpf.link_info(fd)
        finally:
            os.close(fd)
        if info.type == libbpf.BPF_LINK_TYPE_XDP and info.ifindex == ifindex:
            out[info.prog_id] = link_id
    return out


class XdpLink:
    """One BPF link holding the program on one interface."""

    def __init__(self, fd: int, mode: XdpMode, ifindex: int) -> None:
        self.fd = fd
        self.mode = mode
        self.ifindex = ifindex
        self._prog_id = libbpf.link_info(fd).prog_id  # what it holds: ours (update() changes it)

    @classmethod
    def attach(cls, prog_fd: int, ifindex: int, iface: str, mode: XdpMode) -> XdpLink:
        try:
            fd = libbpf.link_create_xdp(prog_fd, ifindex, MODE_FLAGS[mode])
        except libbpf.BpfCallError as exc:
            if exc.errno in (errno.EBUSY, errno.EEXIST):
                raise XdpBusy(
                    f"{iface} already has an XDP program in {mode} mode: ironpost will not replace it"
                ) from exc
            if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOTSUP):
                hint = "use --xdp-mode skb or --xdp-mode auto"
                if mode == XdpMode.SKB:
                    hint = "check the kernel's XDP support"
                raise ModeUnsupported(f"{iface} does not support XDP in {mode} mode ({exc.strerror}): {hint}") from exc
            raise
        return cls(fd, mode, ifindex)

    @classmethod
    def attach_auto(cls, prog_fd: int, ifindex: int, iface: str, notice: Callable[[str], None]) -> XdpLink:
        """Native if the driver can, else skb (generic) mode, saying so."""
        try:
            return cls.attach(prog_fd, ifindex, iface, XdpMode.NATIVE)
        except ModeUnsupported as exc:
            notice(
                f"native XDP is not available on {iface} ({exc.message.split('(')[-1].split(')')[0]}); "
                "using skb (generic) mode, which is slower"
            )
            return cls.attach(prog_fd, ifindex, iface, XdpMode.SKB)

    @classmethod
    def adopt(cls, pin_path: str, ifindex: int) -> XdpLink:
        """Take over a pinned link; it keeps enforcing the whole time."""
        fd = libbpf.obj_get(pin_path)
        info = libbpf.link_info(fd)
        attached = libbpf.xdp_query(ifindex)
        mode = next((m for m, pid in attached.prog_ids if pid == info.prog_id), XdpMode.NATIVE)
        return cls(fd, mode, ifindex)

    def holds(self) -> bool:
        """Whether the link still holds our program on its interface: False once another process detached it
        (`bpftool link detach`; the kernel then reports it on no interface, as when the interface went) or
        put another program on it (BPF_LINK_UPDATE through the link's id).  One bpf() call (it takes the
        kernel's rtnl lock for a moment)."""
        try:
            info = libbpf.link_info(self.fd)
        except OSError:  # never for a link we hold: not taken for a detach
            return True
        return info.ifindex == self.ifindex and info.prog_id == self._prog_id

    @property
    def link_id(self) -> int:
        return libbpf.link_info(self.fd).id

    @property
    def prog_id(self) -> int:
        return libbpf.link_info(self.fd).prog_id

    def pin(self, path: str) -> None:
        libbpf.obj_pin(self.fd, path)

    def update(self, prog_fd: int) -> None:
        """Swap in a new program atomically."""
        libbpf.link_update(self.fd, prog_fd)
        self._prog_id = libbpf.link_info(self.fd).prog_id

    def detach(self) -> None:
        """Detach now, even if the link is pinned or held elsewhere."""
        try:
            libbpf.link_detach(self.fd)
        except libbpf.BpfCallError as exc:
            if exc.errno not in (errno.ENOLINK, errno.ENOENT, errno.EINVAL):
                raise

    def close(self) -> None:
        """Drop our fd: the link detaches unless it is pinned."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
