"""ctypes bindings to the libbpf calls ironpost uses.

BPF links (attach that ends with the last fd), pinning, object info, XDP queries, BPF_PROG_TEST_RUN, map
access by fd, the ring-buffer consumer, and creating maps and loading a program (the compiled-program
cache's loader).  libbpf.so.1 (1.0 or newer) comes with BCC's distribution packages; without it, the first
call raises ``LibbpfMissing``.  Every call raises ``BpfCallError`` with the errno on failure.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache

from ironpost_tui.errors import LibbpfMissing
from ironpost_tui.model import StrEnum

BPF_XDP = 37  # enum bpf_attach_type
BPF_LINK_TYPE_XDP = 6

XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0
XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2
XDP_FLAGS_HW_MODE = 1 << 3
XDP_FLAGS_REPLACE = 1 << 4


class XdpMode(StrEnum):
    """How an XDP program is attached (`ip link` shows xdp, xdpgeneric, xdpoffload)."""

    NATIVE = "native"
    SKB = "skb"  # generic
    OFFLOAD = "offload"


XDP_ATTACHED_NONE = 0
XDP_ATTACHED_DRV = 1
XDP_ATTACHED_SKB = 2
XDP_ATTACHED_HW = 3
XDP_ATTACHED_MULTI = 4


class BpfCallError(OSError):
    """A libbpf call failed; ``errno`` holds the reason."""

    def __init__(self, call: str, err: int) -> None:
        super().__init__(err, f"{call}: {os.strerror(err)}")
        self.call = call


class _LinkCreateOpts(ctypes.Structure):
    # struct bpf_link_create_opts: sz, flags, then a union we never use
    # (kept zeroed: libbpf rejects non-zero bytes it does not know).
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("flags", ctypes.c_uint32),
        ("_union", ctypes.c_uint64 * 6),
    ]


class _LinkUpdateOpts(ctypes.Structure):
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("flags", ctypes.c_uint32),
        ("old_prog_fd", ctypes.c_uint32),
    ]


class _XdpQueryOpts(ctypes.Structure):
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("prog_id", ctypes.c_uint32),
        ("drv_prog_id", ctypes.c_uint32),
        ("hw_prog_id", ctypes.c_uint32),
        ("skb_prog_id", ctypes.c_uint32),
        ("attach_mode", ctypes.c_uint8),
    ]


class _XdpAttachOpts(ctypes.Structure):
    _fields_ = [("sz", ctypes.c_size_t), ("old_prog_fd", ctypes.c_int)]


class _TestRunOpts(ctypes.Structure):
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("data_in", ctypes.c_void_p),
        ("data_out", ctypes.c_void_p),
        ("data_size_in", ctypes.c_uint32),
        ("data_size_out", ctypes.c_uint32),
        ("ctx_in", ctypes.c_void_p),
        ("ctx_out", ctypes.c_void_p),
        ("ctx_size_in", ctypes.c_uint32),
        ("ctx_size_out", ctypes.c_uint32),
        ("retval", ctypes.c_uint32),
        ("repeat", ctypes.c_int),
        ("duration", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32),
        ("batch_size", ctypes.c_uint32),
    ]


# libbpf 1.x: its ABI is stable within the major version, and every call below is in 1.0.  Loaded by this
# name, never by ctypes.util.find_library("bpf"), which may return an older libbpf.so.0 beside it (Ubuntu
# 22.04 packages only libbpf 0.5, whose bpf_prog_load and perf_buffer__new take other arguments: a call
# through them would be undefined, not an error).
LIBBPF_SONAME = "libbpf.so.1"
LIBBPF_MISSING = (
    "libbpf 1.0 or newer is missing ({why}): install it with `apt-get install libbpf1` (Debian 12 and "
    "Ubuntu 24.04 package it; Ubuntu 22.04 packages only libbpf 0.5, see the README's Quick start)"
)


def check() -> None:
    """Raise LibbpfMissing, one line that says what to install, when libbpf.so.1 cannot be used."""
    _lib()


@cache
def _lib() -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL(LIBBPF_SONAME, use_errno=True)
    except OSError as exc:
        other = ctypes.util.find_library("bpf")  # ldconfig's cache: what the host has instead, if anything
        why = f"{exc}; the host has {other}" if other and other != LIBBPF_SONAME else str(exc)
        raise LibbpfMissing(LIBBPF_MISSING.format(why=why)) from None
    try:
        _declare(lib)
    except AttributeError as exc:  # a libbpf.so.1 without a call of 1.0: not the real one
        raise LibbpfMissing(LIBBPF_MISSING.format(why=f"{lib._name} lacks {exc.args[0].split()[-1]}")) from None
    return lib


def _declare(lib: ctypes.CDLL) -> None:
    for fn, args in {
        "bpf_link_create": [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p],
        "bpf_link_update": [ctypes.c_int, ctypes.c_int, ctypes.c_void_p],
        "bpf_link_detach": [ctypes.c_int],
        "bpf_obj_pin": [ctypes.c_int, ctypes.c_char_p],
        "bpf_obj_get": [ctypes.c_char_p],
        "bpf_obj_get_info_by_fd": [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p],
        "bpf_prog_get_fd_by_id": [ctypes.c_uint32],
        "bpf_link_get_fd_by_id": [ctypes.c_uint32],
        "bpf_map_get_fd_by_id": [ctypes.c_uint32],
        "bpf_link_get_next_id": [ctypes.c_uint32, ctypes.c_void_p],
        "bpf_xdp_query": [ctypes.c_int, ctypes.c_int, ctypes.c_void_p],
        "bpf_xdp_detach": [ctypes.c_int, ctypes.c_uint32, ctypes.c_void_p],
        "bpf_prog_test_run_opts": [ctypes.c_int, ctypes.c_void_p],
        "bpf_map_lookup_elem": [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p],
        "bpf_map_update_elem": [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64],
        "bpf_map_delete_elem": [ctypes.c_int, ctypes.c_void_p],
        "bpf_map_get_next_key": [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p],
        "bpf_map_create": [
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_uint32,
            ctypes.c_uint32,
            ctypes.c_uint32,
            ctypes.c_void_p,
        ],
        "bpf_prog_load": [
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_void_p,
        ],
        "libbpf_num_possible_cpus": [],
        "ring_buffer__poll": [ctypes.c_void_p, ctypes.c_int],
        "perf_buffer__poll": [ctypes.c_void_p, ctypes.c_int],
        "bpf_map_update_batch": [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p],
        "bpf_map_lookup_batch": [
            ctypes.c_int,
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ],
    }.items():
        f = getattr(lib, fn)
        f.argtypes = args
        f.restype = ctypes.c_int
    lib.perf_buffer__new.argtypes = [
        ctypes.c_int,
        ctypes.c_size_t,
        PERF_SAMPLE_FN,
        PERF_LOST_FN,
        ctypes.c_void_p,
        ctypes.c_void_p,
    ]
    lib.perf_buffer__new.restype = ctypes.c_void_p
    lib.perf_buffer__free.argtypes = [ctypes.c_void_p]
    lib.perf_buffer__free.restype = None
    lib.ring_buffer__new.argtypes = [ctypes.c_int, RING_SAMPLE_FN, ctypes.c_void_p, ctypes.c_void_p]
    lib.ring_buffer__new.restype = ctypes.c_void_p
    lib.ring_buffer__free.argtypes = [ctypes.c_void_p]
    lib.ring_buffer__free.restype = None
    lib.btf__load_from_kernel_by_id.argtypes = [ctypes.c_uint32]
    lib.btf__load_from_kernel_by_id.restype = ctypes.c_void_p
    lib.btf__raw_data.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint32)]
    lib.btf__raw_data.restype = ctypes.c_void_p
    lib.btf__free.argtypes = [ctypes.c_void_p]
    lib.btf__free.restype = None
    lib.bpf_btf_load.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    lib.bpf_btf_load.restype = ctypes.c_int


# libbpf's perf_buffer callbacks: sample(ctx, cpu, data, size) and lost(ctx, cpu, count).
PERF_SAMPLE_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_uint32)
PERF_LOST_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int, ctypes.c_uint64)
# libbpf's ring_buffer callback: sample(ctx, data, size); a negative return stops the poll after it.
RING_SAMPLE_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)


def available() -> bool:
    """True when libbpf.so.1 can be loaded and has every call ironpost makes."""
    try:
        _lib()
    except LibbpfMissing:
        return False
    return True


def _check(call: str, ret: int) -> int:
    if ret < 0:
        err = -ret if ret != -1 else (ctypes.get_errno() or errno.EIO)
        raise BpfCallError(call, err)
    return ret


def link_create_xdp(prog_fd: int, ifindex: int, flags: int) -> int:
    """Attach ``prog_fd`` to ``ifindex`` through a BPF link; returns the link fd."""
    opts = _LinkCreateOpts(sz=ctypes.sizeof(_LinkCreateOpts), flags=flags)
    return _check("bpf_link_create", _lib().bpf_link_create(prog_fd, ifindex, BPF_XDP, ctypes.byref(opts)))


def link_update(link_fd: int, new_prog_fd: int) -> None:
    """Swap the program behind a link atomically: no packet sees no program."""
    opts = _LinkUpdateOpts(sz=ctypes.sizeof(_LinkUpdateOpts))
    _check("bpf_link_update", _lib().bpf_link_update(link_fd, new_prog_fd, ctypes.byref(opts)))


def link_detach(link_fd: int) -> None:
    _check("bpf_link_detach", _lib().bpf_link_detach(link_fd))


def obj_pin(fd: int, path: str) -> None:
    _check("bpf_obj_pin", _lib().bpf_obj_pin(fd, os.fsencode(path)))


def obj_get(path: str) -> int:
    return _check("bpf_obj_get", _lib().bpf_obj_get(os.fsencode(path)))


def prog_fd_by_id(prog_id: int) -> int:
    return _check("bpf_prog_get_fd_by_id", _lib().bpf_prog_get_fd_by_id(prog_id))


def link_fd_by_id(link_id: int) -> int:
    return _check("bpf_link_get_fd_by_id", _lib().bpf_link_get_fd_by_id(link_id))


def _info(fd: int, size: int = 256) -> bytes:
    buf = ctypes.create_string_buffer(size)
    length = ctypes.c_uint32(size)
    _check("bpf_obj_get_info_by_fd", _lib().bpf_obj_get_info_by_fd(fd, buf, ctypes.byref(length)))
    return buf.raw[: length.value]


def _u32(raw: bytes, off: int) -> int:
    return int.from_bytes(raw[off : off + 4], "little")


@dataclass(frozen=True)
class ProgInfo:
    id: int
    type: int
    name: str
    verified_insns: int = 0  # what the verifier processed (kernel 5.16+; 0 before)


@dataclass(frozen=True)
class MapInfo:
    id: int
    type: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int
    name: str
    btf_id: int = 0  # the BTF object describing its key and value (0: none)
    btf_key_type_id: int = 0
    btf_value_type_id: int = 0


@dataclass(frozen=True)
class LinkInfo:
    id: int
    type: int
    prog_id: int
    ifindex: int


def _name(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode(errors="replace")


def prog_info(fd: int) -> ProgInfo:
    raw = _info(fd)
    # struct bpf_prog_info: type@0 id@4 ... name[16]@64 ... verified_insns@216
    verified = _u32(raw, 216) if len(raw) >= 220 else 0
    return ProgInfo(id=_u32(raw, 4), type=_u32(raw, 0), name=_name(raw[64:80]), verified_insns=verified)


def prog_map_ids(fd: int) -> list[int]:
    """The ids of the maps a program uses."""
    ids = (ctypes.c_uint32 * 64)()
    # struct bpf_prog_info: nr_map_ids@52 (in: room, out: count), map_ids@56 (a user pointer)
    request = bytes(52) + (64).to_bytes(4, "little") + ctypes.addressof(ids).to_bytes(8, "little")
    buf = ctypes.create_string_buffer(request, 256)
    length = ctypes.c_uint32(256)
    _check("bpf_obj_get_info_by_fd", _lib().bpf_obj_get_info_by_fd(fd, buf, ctypes.byref(length)))
    return list(ids[: min(64, _u32(buf.raw, 52))])


def map_fd_by_id(map_id: int) -> int:
    return _check("bpf_map_get_fd_by_id", _lib().bpf_map_get_fd_by_id(map_id))


class PerfBuffer:
    """libbpf's perf_buffer on a BPF_MAP_TYPE_PERF_EVENT_ARRAY: one ring per CPU, opened by this process.

    Opening it points every CPU's entry of the map at this process's rings (whoever opened it before
    stops receiving); closing the rings takes the entries out again, kill -9 included.
    """

    def __init__(
        self,
        map_fd: int,
        pages: int,
        on_sample: Callable[[int, bytes], None],
        on_lost: Callable[[int, int], None],
    ) -> None:
        # Kept on self: ctypes callbacks must outlive the buffer that calls them.
        self._sample = PERF_SAMPLE_FN(lambda _ctx, cpu, data, size: on_sample(cpu, ctypes.string_at(data, size)))
        self._lost = PERF_LOST_FN(lambda _ctx, cpu, count: on_lost(cpu, count))
        ptr = _lib().perf_buffer__new(map_fd, pages, self._sample, self._lost, None, None)
        if not ptr:
            raise BpfCallError("perf_buffer__new", ctypes.get_errno() or errno.EINVAL)
        self._pb: int | None = ptr

    def poll(self, timeout_ms: int) -> int:
        """Call back for what the rings hold, waiting up to ``timeout_ms``; returns how many samples."""
        if self._pb is None:
            return 0
        ret: int = _lib().perf_buffer__poll(self._pb, timeout_ms)
        if ret < 0 and -ret != errno.EINTR:
            _check("perf_buffer__poll", ret)
        return max(ret, 0)

    def close(self) -> None:
        if self._pb is not None:
            _lib().perf_buffer__free(self._pb)
            self._pb = None


def map_info(fd: int) -> MapInfo:
    raw = _info(fd)
    # struct bpf_map_info: type id key_size value_size max_entries map_flags name[16] ... btf_id@64
    # btf_key_type_id@68 btf_value_type_id@72
    return MapInfo(
        id=_u32(raw, 4),
        type=_u32(raw, 0),
        key_size=_u32(raw, 8),
        value_size=_u32(raw, 12),
        max_entries=_u32(raw, 16),
        flags=_u32(raw, 20),
        name=_name(raw[24:40]),
        btf_id=_u32(raw, 64) if len(raw) >= 76 else 0,
        btf_key_type_id=_u32(raw, 68) if len(raw) >= 76 else 0,
        btf_value_type_id=_u32(raw, 72) if len(raw) >= 76 else 0,
    )


def link_info(fd: int) -> LinkInfo:
    raw = _info(fd)
    # struct bpf_link_info: type@0 id@4 prog_id@8, union@16 (xdp.ifindex first)
    return LinkInfo(id=_u32(raw, 4), type=_u32(raw, 0), prog_id=_u32(raw, 8), ifindex=_u32(raw, 16))


def link_ids() -> list[int]:
    """Ids of every BPF link in the system."""
    ids = []
    cur = ctypes.c_uint32(0)
    nxt = ctypes.c_uint32(0)
    while _lib().bpf_link_get_next_id(cur.value, ctypes.byref(nxt)) == 0:
        ids.append(nxt.value)
        cur.value = nxt.value
    return ids


@dataclass(frozen=True)
class XdpAttachment:
    """What XDP program ids an interface has, per mode (0 = none)."""

    drv_prog_id: int
    skb_prog_id: int
    hw_prog_id: int

    @property
    def prog_ids(self) -> list[tuple[XdpMode, int]]:
        modes = (
            (XdpMode.NATIVE, self.drv_prog_id),
            (XdpMode.SKB, self.skb_prog_id),
            (XdpMode.OFFLOAD, self.hw_prog_id),
        )
        return [(m, i) for m, i in modes if i]


def xdp_query(ifindex: int) -> XdpAttachment:
    opts = _XdpQueryOpts(sz=ctypes.sizeof(_XdpQueryOpts))
    _check("bpf_xdp_query", _lib().bpf_xdp_query(ifindex, 0, ctypes.byref(opts)))
    return XdpAttachment(opts.drv_prog_id, opts.skb_prog_id, opts.hw_prog_id)


def xdp_detach(ifindex: int, flags: int, old_prog_fd: int) -> None:
    """Detach a netlink-attached program, only if it is still ``old_prog_fd``."""
    opts = _XdpAttachOpts(sz=ctypes.sizeof(_XdpAttachOpts), old_prog_fd=old_prog_fd)
    _check("bpf_xdp_detach", _lib().bpf_xdp_detach(ifindex, flags | XDP_FLAGS_REPLACE, ctypes.byref(opts)))


@dataclass(frozen=True)
class TestRun:
    retval: int
    duration_ns: int
    data_out: bytes


def prog_test_run(prog_fd: int, data: bytes, repeat: int = 1) -> TestRun:
    """BPF_PROG_TEST_RUN: run the program on ``data``; duration is ns per run."""
    data_in = ctypes.create_string_buffer(data, len(data))
    out = ctypes.create_string_buffer(len(data) + 256)
    opts = _TestRunOpts(
        sz=ctypes.sizeof(_TestRunOpts),
        data_in=ctypes.cast(data_in, ctypes.c_void_p),
        data_out=ctypes.cast(out, ctypes.c_void_p),
        data_size_in=len(data),
        data_size_out=len(out),
        repeat=repeat,
    )
    _check("bpf_prog_test_run_opts", _lib().bpf_prog_test_run_opts(prog_fd, ctypes.byref(opts)))
    return TestRun(opts.retval, opts.duration, out.raw[: opts.data_size_out])


def map_lookup(map_fd: int, key: bytes, value_size: int) -> bytes | None:
    """One entry (a per-CPU map's value_size is every possible CPU's value, each 8-aligned)."""
    value = ctypes.create_string_buffer(value_size)
    ret = _lib().bpf_map_lookup_elem(map_fd, key, value)
    if ret < 0:
        err = -ret if ret != -1 else ctypes.get_errno()
        if err == errno.ENOENT:
            return None
        raise BpfCallError("bpf_map_lookup_elem", err)
    return value.raw


BPF_ANY = 0  # bpf_map_update_elem flags: create or replace
BPF_EXIST = 2  # replace only: ENOENT when the key is not there


def map_update(map_fd: int, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
    _check("bpf_map_update_elem", _lib().bpf_map_update_elem(map_fd, key, value, flags))


def map_delete(map_fd: int, key: bytes) -> bool:
    """Delete one entry; False when it was not there."""
    ret = _lib().bpf_map_delete_elem(map_fd, key)
    if ret < 0:
        err = -ret if ret != -1 else ctypes.get_errno()
        if err == errno.ENOENT:
            return False
        raise BpfCallError("bpf_map_delete_elem", err)
    return True


def map_keys(map_fd: int, key_size: int) -> Iterator[bytes]:
    """Every key, through BPF_MAP_GET_NEXT_KEY (a hash map deleted from meanwhile may start over, as
    the syscall does)."""
    cur = ctypes.create_string_buffer(key_size)
    nxt = ctypes.create_string_buffer(key_size)
    first = True
    while True:
        ret = _lib().bpf_map_get_next_key(map_fd, None if first else cur, nxt)
        if ret < 0:
            err = -ret if ret != -1 else ctypes.get_errno()
            if err == errno.ENOENT:
                return
            raise BpfCallError("bpf_map_get_next_key", err)
        yield nxt.raw
        ctypes.memmove(cur, nxt, key_size)
        first = False


@cache
def possible_cpus() -> int:
    """The possible CPUs: a per-CPU map's value holds one slot for each."""
    return _check("libbpf_num_possible_cpus", _lib().libbpf_num_possible_cpus())


class _MapCreateOpts(ctypes.Structure):
    # struct bpf_map_create_opts (libbpf 1.x)
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("btf_fd", ctypes.c_uint32),
        ("btf_key_type_id", ctypes.c_uint32),
        ("btf_value_type_id", ctypes.c_uint32),
        ("btf_vmlinux_value_type_id", ctypes.c_uint32),
        ("inner_map_fd", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32),
        ("map_extra", ctypes.c_uint64),
        ("numa_node", ctypes.c_uint32),
        ("map_ifindex", ctypes.c_uint32),
    ]


def map_create(
    map_type: int,
    name: str,
    key_size: int,
    value_size: int,
    max_entries: int,
    flags: int,
    btf: tuple[int, int, int] | None = None,
) -> int:
    """A new map; ``btf``: (BTF fd, key type id, value type id) describing it.  Returns its fd."""
    opts = _MapCreateOpts(sz=ctypes.sizeof(_MapCreateOpts), map_flags=flags)
    if btf is not None:
        opts.btf_fd, opts.btf_key_type_id, opts.btf_value_type_id = btf
    ret = _lib().bpf_map_create(map_type, name.encode(), key_size, value_size, max_entries, ctypes.byref(opts))
    return _check("bpf_map_create", ret)


def btf_raw(btf_id: int) -> bytes:
    """A BTF object the kernel holds, as the bytes that load it again."""
    lib = _lib()
    btf = lib.btf__load_from_kernel_by_id(btf_id)
    if not btf:
        raise BpfCallError("btf__load_from_kernel_by_id", ctypes.get_errno() or errno.ENOENT)
    try:
        size = ctypes.c_uint32()
        data = lib.btf__raw_data(btf, ctypes.byref(size))
        if not data:
            raise BpfCallError("btf__raw_data", ctypes.get_errno() or errno.ENOMEM)
        return ctypes.string_at(data, size.value)
    finally:
        lib.btf__free(btf)


def btf_load(data: bytes) -> int:
    """Load BTF (the kernel checks it); returns its fd."""
    buf = ctypes.create_string_buffer(data, len(data))
    return _check("bpf_btf_load", _lib().bpf_btf_load(buf, len(data), None))


BPF_PROG_TYPE_XDP = 6


def prog_load(prog_type: int, name: str, license: str, insns: bytes) -> int:
    """Load a program (no BTF, no attach type) through the verifier; returns its fd."""
    if len(insns) % 8:
        raise ValueError("instructions are 8 bytes each")
    buf = ctypes.create_string_buffer(insns, len(insns))
    ret = _lib().bpf_prog_load(prog_type, name.encode(), license.encode(), buf, len(insns) // 8, None)
    return _check("bpf_prog_load", ret)


class RingBuffer:
    """libbpf's consumer of a BPF_MAP_TYPE_RINGBUF: one callback per record (where the mmap reader in
    ringbuf.py cannot be used)."""

    def __init__(self, map_fd: int, on_sample: Callable[[bytes], bool]) -> None:
        """``on_sample`` gets each record; False stops the current poll after it (it stays consumed)."""

        def sample(_ctx: int | None, data: int, size: int) -> int:
            return 0 if on_sample(ctypes.string_at(data, size)) else -errno.ECANCELED

        self._sample = RING_SAMPLE_FN(sample)  # kept: the callback must outlive the buffer
        ptr = _lib().ring_buffer__new(map_fd, self._sample, None, None)
        if not ptr:
            raise BpfCallError("ring_buffer__new", ctypes.get_errno() or errno.EINVAL)
        self._rb: int | None = ptr

    def poll(self, timeout_ms: int) -> None:
        if self._rb is None:
            return
        ret: int = _lib().ring_buffer__poll(self._rb, timeout_ms)
        if ret < 0 and -ret not in (errno.EINTR, errno.ECANCELED):  # ECANCELED: on_sample said stop
            _check("ring_buffer__poll", ret)

    def close(self) -> None:
        if self._rb is not None:
            _lib().ring_buffer__free(self._rb)
            self._rb = None


class BatchError(BpfCallError):
    """A batch write stopped at an entry: ``done`` entries before it were written."""

    def __init__(self, call: str, err: int, done: int) -> None:
        super().__init__(call, err)
        self.done = done


def map_update_batch(map_fd: int, keys: bytes, values: bytes, count: int) -> None:
    """Create or replace ``count`` entries, keys and values packed back to back, in one syscall
    (BPF_MAP_UPDATE_BATCH); BatchError, with how many went in first, when one fails."""
    done = ctypes.c_uint32(count)
    ret = _lib().bpf_map_update_batch(map_fd, keys, values, ctypes.byref(done), None)
    if ret < 0:
        err = -ret if ret != -1 else (ctypes.get_errno() or errno.EIO)
        raise BatchError("bpf_map_update_batch", err, min(done.value, count))


class BatchReader:
    """Batch reads of one map into buffers allocated once, the size of the whole map (``keys`` and
    ``values``, bytearrays the kernel writes into): a read allocates nothing, so a reader that reads a
    whole map each time (a flood dirtied every set of a sketch) grows no memory and frees none.  What a
    read gives is valid until the next read."""

    def __init__(self, map_fd: int, key_size: int, value_size: int, max_entries: int) -> None:
        self.fd, self.key_size, self.value_size, self.max_entries = map_fd, key_size, value_size, max_entries
        self.keys = bytearray(key_size * max_entries)
        self.values = bytearray(value_size * max_entries)
        self._keys = (ctypes.c_char * len(self.keys)).from_buffer(self.keys)
        self._values = (ctypes.c_char * len(self.values)).from_buffer(self.values)

    def read(self) -> int:
        """Every entry (of a hash map: as many as it holds) in a few syscalls, packed back to back from
        the start of ``keys`` and ``values``; how many."""
        key_size, value_size, max_entries = self.key_size, self.value_size, self.max_entries
        token_in = ctypes.c_uint64(0)
        token_out = ctypes.c_uint64(0)
        total = 0
        first = True
        while total < max_entries:
            count = ctypes.c_uint32(max_entries - total)
            ret = _lib().bpf_map_lookup_batch(
                self.fd,
                None if first else ctypes.byref(token_in),
                ctypes.byref(token_out),
                ctypes.byref(self._keys, total * key_size),
                ctypes.byref(self._values, total * value_size),
                ctypes.byref(count),
                None,
            )
            total += count.value
            if ret < 0:
                err = -ret if ret != -1 else ctypes.get_errno()
                if err == errno.ENOENT:  # no more entries: count has the last ones
                    break
                raise BpfCallError("bpf_map_lookup_batch", err)
            token_in.value = token_out.value
            first = False
        return total


def map_lookup_batch(map_fd: int, key_size: int, value_size: int, max_entries: int) -> tuple[bytes, bytes, int]:
    """Every entry of a hash map in a few syscalls: (keys, values, count), packed back to back (copies:
    a reader that reads again and again keeps a BatchReader)."""
    reader = BatchReader(map_fd, key_size, value_size, max_entries)
    total = reader.read()
    return bytes(reader.keys[: total * key_size]), bytes(reader.values[: total * value_size]), total
