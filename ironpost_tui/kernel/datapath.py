"""Compile and load bpf/ironpost_xdp.c with BCC, or load it from the compiled-program cache; the
only owner of its maps.

Nothing BCC- or ctypes-shaped leaves this module: callers get bytes in and
plain Python values out.  The maps are read and written by fd through libbpf
(bpf_map.py), whichever loaded the program.
"""

from __future__ import annotations

import array
import contextlib
import errno
import importlib.util
import logging
import operator
import os
import sys
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ironpost_tui.errors import BccMissing, BlocklistFull, HeadersMissing, LoadFailed, PinMismatch
from ironpost_tui.kernel import abi, libbpf, program_cache, resources, ringbuf
from ironpost_tui.kernel.abi import MapName
from ironpost_tui.kernel.bpf_map import ARRAY, LPM_TRIE, BpfMap
from ironpost_tui.kernel.signals_held import signals_held
from ironpost_tui.kernel.xdp_link import PROG_NAME

ENOTSUPP = 524  # the kernel's own "operation not supported" (not in errno): a map type without batch ops

log = logging.getLogger(__name__)

# Events one poll delivers at most, so a tick ends under an event flood.
MAX_EVENTS_PER_POLL = 8192
AS_CREATED_MAX = 4096  # entries written to an array as created that a whole read of it is built from

# enum bpf_map_type values for the layout check of pinned maps.
_HASH, _ARRAY, _PERCPU_ARRAY, _LPM_TRIE = 1, 2, 6, 11


def sum_hits(raw: bytes | memoryview, ncpu: int) -> list[tuple[int, int]]:
    """RULE_HITS slots as percpu_hits_raw reads them: (packets summed, latest last_hit_ns) of each."""
    # Each slot is ncpu (packets, last_hit_ns) pairs of u64 in the host's order (as abi.RULE_HIT reads
    # them on the little-endian hosts this runs on): the sums and maxima over CPUs a column at a
    # time (C loops; a per-slot Python loop over 10,000 rules was tens of ms every second).
    words = memoryview(raw).cast("B").cast("Q")
    stride = 2 * ncpu
    packets = words[0::stride].tolist()
    last = words[1::stride].tolist()
    for c in range(1, ncpu):
        packets = list(map(operator.add, packets, words[2 * c :: stride].tolist()))
        last = list(map(max, last, words[2 * c + 1 :: stride].tolist()))
    return list(zip(packets, last, strict=True))


@dataclass(frozen=True)
class DatapathConfig:
    """Sizes and knobs compiled into the program (the -D flags)."""

    blocklist_max_entries: int = 10_000
    cidr_max_entries: int = 10_000
    match_max_entries: int = 1_024
    shapes_max: int = 8
    allow_max_entries: int = 1_024
    ring_buffer_kib: int = 256
    event_rate: int = 10_000  # events/s per CPU; 0 = unlimited
    # Detector sketches, per CPU: sets of abi.SKETCH_WAYS ways (powers of two, at least 64).
    src_sketch_sets: int = 1_024
    dst_sketch_sets: int = 64
    port_memory_secs: float = 60.0  # a source's probed ports are forgotten this often
    # Top talkers, per CPU: sets of abi.TOP_WAYS ways (powers of two, at least 16).
    top_src_sets: int = 512
    top_dst_sets: int = 128
    top_port_sets: int = 128

    @property
    def rule_slots(self) -> int:
        return self.blocklist_max_entries + 2 * self.cidr_max_entries + self.match_max_entries

    @property
    def exact4_buckets(self) -> int:
        """EXACT4's buckets: a power of two, about a quarter of BLOCKLIST's entries (<= 4 addresses per
        8-way bucket on average when BLOCKLIST is full; an address whose bucket is full is looked up in
        BLOCKLIST instead)."""
        return 1 << max(6, min(24, (max(1, self.blocklist_max_entries) // 4 - 1).bit_length()))

    @property
    def prefixh_buckets(self) -> int:
        """PREFIX4H's and PREFIX6H's buckets: as EXACT4's, from SRC4's and SRC6's entries."""
        return 1 << max(6, min(24, (max(1, self.cidr_max_entries) // 4 - 1).bit_length()))

    @property
    def matchh_buckets(self) -> int:
        """MATCHH's buckets: a power of two, at least MATCH's entries (<= 1 key per 4-way bucket on average
        when MATCH is full: about 0.4% of keys then find their bucket full, and are looked up in MATCH)."""
        return 1 << max(6, min(24, (max(1, self.match_max_entries) - 1).bit_length()))

    @property
    def ringbuf_pages(self) -> int:
        return max(1, self.ring_buffer_kib * 1024 // os.sysconf("SC_PAGE_SIZE"))

    def cflags(self) -> list[str]:
        return [
            f"-DBLOCKLIST_MAX={self.blocklist_max_entries}",
            f"-DEXACT4_BITS={self.exact4_buckets.bit_length() - 1}",
            f"-DPREFIXH_BITS={self.prefixh_buckets.bit_length() - 1}",
            f"-DCIDR_MAX={self.cidr_max_entries}",
            f"-DMATCH_MAX={self.match_max_entries}",
            f"-DMATCHH_BITS={self.matchh_buckets.bit_length() - 1}",
            f"-DSHAPES_MAX={self.shapes_max}",
            f"-DALLOW_MAX={self.allow_max_entries}",
            f"-DRULE_SLOTS={self.rule_slots}",
            f"-DRINGBUF_PAGES={self.ringbuf_pages}",
            f"-DEVENT_RATE={self.event_rate}U",
            f"-DSRC_SETS_BITS={_log2(self.src_sketch_sets)}",
            f"-DDST_SETS_BITS={_log2(self.dst_sketch_sets)}",
            f"-DPORT_MEMORY_NS={int(self.port_memory_secs * abi.NSEC_PER_SEC)}ULL",
            f"-DTOP_SRC_BITS={_log2(self.top_src_sets, 16)}",
            f"-DTOP_DST_BITS={_log2(self.top_dst_sets, 16)}",
            f"-DTOP_PORT_BITS={_log2(self.top_port_sets, 16)}",
        ]

    def expected_maps(self) -> dict[MapName, tuple[int, int, int, int]]:
        """(type, key size, value size, max entries) of every pinned map."""
        v = abi.BLOCKLIST_VALUE.size
        return {
            MapName.BLOCKLIST: (_HASH, 4, v, self.blocklist_max_entries),
            MapName.EXACT4: (_ARRAY, 4, abi.EXACT4_BUCKET.size, self.exact4_buckets),
            MapName.PREFIX4H: (_ARRAY, 4, abi.PREFIX4H_BUCKET.size, self.prefixh_buckets),
            MapName.PREFIX6H: (_ARRAY, 4, abi.PREFIX6H_BUCKET.size, self.prefixh_buckets),
            MapName.SRC4: (_LPM_TRIE, abi.LPM_V4_KEY.size, v, self.cidr_max_entries),
            MapName.SRC6: (_LPM_TRIE, abi.LPM_V6_KEY.size, v, self.cidr_max_entries),
            MapName.MATCH: (_HASH, abi.MATCH_KEY.size, v, self.match_max_entries),
            MapName.MATCHH: (_ARRAY, 4, abi.MATCHH_BUCKET.size, self.matchh_buckets),
            MapName.FRAG_MATCH: (_HASH, abi.MATCH_KEY.size, v, 2 * self.match_max_entries),
            MapName.SHAPES: (_ARRAY, 4, abi.RULE_SHAPE.size, self.shapes_max),
            MapName.ALLOW4: (_LPM_TRIE, abi.LPM_V4_KEY.size, abi.ALLOW_VALUE.size, self.allow_max_entries),
            MapName.ALLOW6: (_LPM_TRIE, abi.LPM_V6_KEY.size, abi.ALLOW_VALUE.size, self.allow_max_entries),
            MapName.CONFIG: (_ARRAY, 4, abi.CONFIG.size, 1),
            MapName.ADDR_FILTER: (_ARRAY, 4, 8, abi.ADDR_FILTER_WORDS),
            MapName.PORT_FILTER: (_ARRAY, 4, 8, abi.PORT_FILTER_WORDS),
            MapName.STATS: (_PERCPU_ARRAY, 4, abi.PROTO_STATS.size, abi.STATS_MAX),
            MapName.RULE_HITS: (_PERCPU_ARRAY, 4, abi.RULE_HIT.size, self.rule_slots),
            MapName.EVENT_STATS: (_PERCPU_ARRAY, 4, 8, abi.EVSTAT_MAX),
            MapName.RATE_STATE: (_PERCPU_ARRAY, 4, 16, 1),
        }


def _log2(n: int, least: int = 64) -> int:
    if n < least or n & (n - 1):
        raise ValueError(f"sketch sets must be a power of two of at least {least}, not {n}")
    return n.bit_length() - 1


BCC_MISSING = (
    "BCC's Python module is missing: install it with `apt-get install python3-bpfcc` and run "
    "from the system python3 or a venv made with --system-site-packages"
)


def check_bcc() -> None:
    """Say how to get BCC if it is not installed, without importing it (that loads LLVM: tens of ms,
    which a start that loads the program from the cache never needs)."""
    if importlib.util.find_spec("bcc") is None:
        raise BccMissing(BCC_MISSING)


# BPF_TABLE_PINNED with flags (bpf/ironpost_xdp.c, the pinned LPM tries need BPF_F_NO_PREALLOC) is 0.25's.
BCC_LEAST = (0, 25)


def import_bcc() -> Any:
    """Import BCC or say how to get it, or that it is too old.  What BCC's own source makes Python warn of as
    it is compiled (Debian 12's 0.26 has an invalid escape in a string: a SyntaxWarning from Python 3.12) is
    not printed: stderr carries ironpost's one-line errors, and the operator can do nothing about it."""
    try:
        if "bcc" in sys.modules:
            import bcc
        else:
            # Only the first import compiles BCC's source.  catch_warnings() holds the process's filters for
            # that while (it may run in the compile thread): nothing else in the engine sets or relies on them.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", SyntaxWarning)
                warnings.simplefilter("ignore", DeprecationWarning)  # the same warning before 3.12
                import bcc
    except ImportError as exc:
        raise BccMissing(BCC_MISSING) from exc
    version = str(getattr(bcc, "__version__", ""))
    head = version.split(".")[:2]
    if len(head) == 2 and all(part.isdigit() for part in head) and (int(head[0]), int(head[1])) < BCC_LEAST:
        raise BccMissing(
            f"BCC {version[:20]} is too old: ironpost-tui needs {BCC_LEAST[0]}.{BCC_LEAST[1]} or newer (python3-bpfcc "
            "of Debian 12 or Ubuntu 24.04; Ubuntu 22.04 packages 0.18)"
        )
    return bcc


def check_kernel_headers(
    modules_root: Path = Path("/lib/modules"), kheaders: Path = Path("/sys/kernel/kheaders.tar.xz")
) -> None:
    """BCC compiles against /lib/modules/$(uname -r)/build (or the kernel's own kheaders)."""
    release = os.uname().release
    build = modules_root / release / "build"
    if not (build / "include").is_dir() and not kheaders.exists():
        raise HeadersMissing(
            f"kernel headers for {release} are missing ({build}): install linux-headers-{release}, "
            "or see the README's 'Kernel headers' section for kernels without a headers package"
        )


def check_pins(pin_dir: Path, cfg: DatapathConfig) -> bool:
    """True when pin_dir holds this version's maps, False when it holds none.

    Raises PinMismatch when it holds a partial set or another layout.
    """
    expected = cfg.expected_maps()
    present = [name for name in expected if (pin_dir / name).exists()]
    if not present:
        return False
    version = _pinned_abi_version(pin_dir)
    if version not in (None, 0, abi.IRONPOST_ABI_VERSION):  # another version's set: say so, not what it lacks
        raise PinMismatch(
            f"pinned maps in {pin_dir} were written by ABI version {version}, this is "
            f"{abi.IRONPOST_ABI_VERSION}: run `ironpost-tui cleanup {pin_dir.name}`"
        )
    missing = sorted(set(expected) - set(present))
    if missing:
        raise PinMismatch(
            f"{pin_dir} holds an incomplete set of ironpost maps (missing {', '.join(missing)}): "
            f"remove it with `ironpost-tui cleanup {pin_dir.name}`"
        )
    for name, want in expected.items():
        fd = libbpf.obj_get(str(pin_dir / name))
        try:
            info = libbpf.map_info(fd)
        finally:
            os.close(fd)
        have = (info.type, info.key_size, info.value_size, info.max_entries)
        if have != want:
            raise PinMismatch(
                f"pinned map {pin_dir / name} has a layout this version does not use "
                f"(type/key/value/entries {have}, expected {want}): it was made by another version "
                f"or other settings; run `ironpost-tui cleanup {pin_dir.name}` or start with the same settings"
            )
    return True


def _pinned_abi_version(pin_dir: Path) -> int | None:
    """CONFIG.abi_version of the maps pinned in ``pin_dir`` (its second u32, in every version's layout);
    None without a readable CONFIG pin."""
    try:
        fd = libbpf.obj_get(str(pin_dir / MapName.CONFIG))
    except OSError:
        return None
    try:
        info = libbpf.map_info(fd)
        raw = libbpf.map_lookup(fd, (0).to_bytes(4, "little"), info.value_size) if info.value_size >= 8 else None
    except OSError:
        return None
    finally:
        os.close(fd)
    return int.from_bytes(raw[4:8], "little") if raw else None


# The maps the Datapath reads and writes, by name (the program has others: capture.py finds those by id).
DATAPATH_MAPS = (*abi.PINNED_MAPS, *abi.AGG_MAPS, *abi.TOP_MAPS, MapName.EVENTS)


class Datapath:
    """The loaded program and its maps: compiled by BCC, or loaded from the compiled-program cache
    (``cache_dir``; unpinned and not offloaded only) when it holds this program."""

    def __init__(
        self,
        cfg: DatapathConfig,
        pin_dir: Path | None = None,
        offload_dev: str | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        self.cfg = cfg
        self.pin_dir = pin_dir
        self._bpf: Any = None  # BCC's module when compiled here: it owns the program and the maps
        self._fn: Any = None
        self._loaded: program_cache.LoadedProgram | None = None  # or this owns them
        self._ring: ringbuf.RingReader | None = None  # mmapped EVENTS, where supported
        self._ringbuf: libbpf.RingBuffer | None = None  # EVENTS through libbpf's callback elsewhere
        src = resources.bpf_source()
        cflags = [f"-I{src.parent}", *cfg.cflags(), *abi.size_cflags()]
        if pin_dir is not None:
            cflags.append(f'-DIRONPOST_PIN_DIR="{pin_dir}"')
        cache = None
        if cache_dir is not None and pin_dir is None and offload_dev is None:
            sources = [*src.parent.glob("*.c"), *src.parent.glob("*.h")]
            cache = program_cache.ProgramCache(cache_dir, program_cache.cache_key(cflags, sources), PROG_NAME)
            self._loaded = _load_cached(cache)
        self.from_cache = self._loaded is not None
        if self._loaded is not None:
            prog_fd, fds = self._loaded.prog_fd, self._loaded.map_fds
        else:
            prog_fd, fds = self._compile(src, cflags, offload_dev, cache)
        self._prog_fd = prog_fd
        try:
            self._maps = {name: BpfMap.of(fds[name]) for name in DATAPATH_MAPS}
        except (KeyError, OSError) as exc:
            self.close()
            raise LoadFailed(f"the loaded program lacks its map {exc}") from exc
        self._records: list[bytes] = []
        self._budget = MAX_EVENTS_PER_POLL
        self._pending: dict[MapName, dict[bytes, bytes]] | None = None  # writes_batched()
        self._pending_owner = 0  # the thread whose writes are kept
        self._arrays_read: dict[MapName, bytes | None] = {}  # writes_batched(): an array read whole, once
        self._as_created: dict[MapName, dict[bytes, bytes]] = {}  # below, once the maps are known new
        config = self.read_config()
        if config[1] not in (0, abi.IRONPOST_ABI_VERSION):
            self.close()
            raise PinMismatch(
                f"pinned maps in {pin_dir} were written by ABI version {config[1]}, this is "
                f"{abi.IRONPOST_ABI_VERSION}: run `ironpost-tui cleanup IFACE`"
            )
        self.reused_maps = config[1] != 0  # pinned maps already in force
        self._hits_zeroed = not self.reused_maps  # RULE_HITS as created: every slot zero (take_zeroed_hits)
        # The plain arrays as the kernel made them (every value zero) and then this Datapath wrote them: maps
        # this process made and never pinned (no other process can open them by a path) nor offloaded, with
        # the entries written since (_written).  A whole read of one in the first writes_batched() (the
        # start's load) is known without the syscall (ADDR_FILTER is 1.5 MB of keys and values to read).
        # A write it cannot follow (a delete, a failed write, more than AS_CREATED_MAX entries) or the map's
        # fd handed out, and the map is read from the kernel again; after that block, always.  (A tool that
        # opened a new map by its id and set an ADDR_FILTER bit before the load would see it cleared, as a
        # write between a whole read and the flush always could be: the surveyor's reconcile sets it again.)
        self._as_created = (
            {}
            if self.reused_maps or pin_dir is not None or offload_dev is not None
            else {name: {} for name in DATAPATH_MAPS if self._maps[name].spec.type == ARRAY}
        )
        if config[1] == 0:  # new maps: stamp them, and seed the sketches' hash
            seed = int.from_bytes(os.urandom(4), "little")
            self.write_config_raw(
                abi.CONFIG.pack(0, abi.IRONPOST_ABI_VERSION, 0, seed, abi.NO_MATCH, 0, 0, 0, bytes(512), b"", b"", 0)
            )

    def _compile(
        self, src: Path, cflags: list[str], offload_dev: str | None, cache: program_cache.ProgramCache | None
    ) -> tuple[int, dict[str, int]]:
        """BCC's compile and load (saved to the cache when there is one): the program's fd, its maps' fds."""
        bcc = import_bcc()
        check_kernel_headers()
        try:
            device = offload_dev.encode() if offload_dev else None
            self._bpf = bcc.BPF(src_file=str(src).encode(), cflags=cflags, device=device)
            with signals_held():  # the verifier: not interrupted by a signal (EAGAIN)
                self._fn = self._bpf.load_func(PROG_NAME.encode(), bcc.BPF.XDP, device=device)
        except Exception as exc:  # BCC raises bare Exception
            raise LoadFailed(f"the XDP program failed to compile or load: {exc}") from exc
        fds = {str(name): int(self._bpf[name.encode()].map_fd) for name in DATAPATH_MAPS}
        if cache is not None:
            insns = bytes(self._bpf.dump_func(PROG_NAME.encode()))
            license = bcc.lib.bpf_module_license(self._bpf.module).decode()
            # The maps the Datapath opens by name go in even when the program does not refer to them
            # (RATE_STATE without a rate limit): BCC creates every map declared.
            prog = program_cache.capture(cache.key, PROG_NAME, license, insns, also=fds)
            if prog is not None:
                cache.write(prog)
        return int(self._fn.fd), fds

    @property
    def prog_fd(self) -> int:
        return self._prog_fd

    def map_fd(self, name: MapName) -> int:
        self._written(name, None)  # whoever holds the fd may write the map
        return self._map(name).fd

    # --- writes kept and written together ---------------------------------------
    @contextlib.contextmanager
    def writes_batched(self) -> Iterator[None]:
        """Within: map_update and percpu_clear are kept (a later write of a key replacing an earlier
        one) and written when the block ends, one BPF_MAP_UPDATE_BATCH per map where its type has one;
        any other use of a map (a read, a delete, its fd) writes what is kept for it first.  The order
        of writes between maps is not kept: for filling maps no attached program reads yet (the
        start's rule load: ten thousand rules are some fifty thousand writes).  Only the calling
        thread's writes are kept and only its uses write them: another thread meanwhile reads and
        writes the maps as they are (it never writes, nor races over, the kept ones)."""
        if self._pending is not None:
            if self._pending_owner != threading.get_ident():
                raise RuntimeError("writes are already batched by another thread")
            yield
            return
        self._pending = {}
        self._pending_owner = threading.get_ident()
        try:
            yield
        finally:
            try:
                for name in list(self._pending):
                    self._flush(name)
            finally:
                self._pending = None
                self._pending_owner = 0
                self._arrays_read.clear()
                self._as_created.clear()  # the start's load is what it is for: not followed after it

    def writes_kept(self) -> bool:
        """Whether the calling thread's writes are kept (inside its writes_batched()): they go in together
        at the block's end, into maps no program reads yet, so the order of its writes is not kept."""
        return self._kept() is not None

    def _kept(self) -> dict[MapName, dict[bytes, bytes]] | None:
        """The writes kept, when the calling thread keeps them (writes_batched)."""
        pending = self._pending
        return pending if pending is not None and self._pending_owner == threading.get_ident() else None

    def _map(self, name: MapName) -> BpfMap:
        """The map, with the writes kept for it written (the keeping thread's uses only)."""
        pending = self._kept()
        if pending and name in pending:
            self._flush(name)
        return self._maps[name]

    def _array_read(self, name: MapName) -> bytes | None:
        """Inside writes_batched(): a plain array's values as one read of the whole map found them (the
        prefilter's read-modify-writes of the start's load: some 6,000 lookups of ADDR_FILTER words
        become one syscall).  Valid while this thread's writes to the map are kept (they are read
        first); dropped when they are written.  None for another type, or a read that came back short."""
        if name not in self._arrays_read:
            m = self._maps[name]
            values: bytes | None = None
            written = self._as_created.get(name)
            if written is not None:  # zeros, as made, and what this Datapath wrote since
                size = m.value_bytes
                whole = bytearray(m.max_entries * size)
                for key, value in written.items():
                    at = int.from_bytes(key, "little") * size
                    whole[at : at + size] = value
                values = bytes(whole)
            elif m.spec.type == ARRAY and m.spec.key_size == 4:
                keys, raw, count = libbpf.map_lookup_batch(m.fd, 4, m.value_bytes, m.max_entries)
                # An array's batch read gives every index in order: anything else, and it is not used.
                if count == m.max_entries and keys == _indices(count):
                    values = raw
            self._arrays_read[name] = values
        return self._arrays_read[name]

    def _written(self, name: MapName, entries: list[tuple[bytes, bytes]] | None) -> None:
        """``name`` changed (or may have): a whole read of it is stale.  And what this Datapath wrote to it
        (written, in order), for an array known as created; None: a change it cannot follow (a delete, a
        failed write, the fd handed out), and the map is read from the kernel again."""
        self._arrays_read.pop(name, None)
        known = self._as_created.get(name)
        if known is None:
            return
        if entries is not None and len(known) + len(entries) <= AS_CREATED_MAX:
            size = self._maps[name].value_bytes
            if all(len(key) == 4 and len(value) == size for key, value in entries):
                known.update(entries)
                return
        self._as_created.pop(name, None)

    def _flush(self, name: MapName) -> None:
        assert self._pending is not None
        entries = list(self._pending.pop(name).items())
        _done, error = self.map_update_batch(name, entries)
        if error is not None:
            raise error

    # --- raw map access by bytes -------------------------------------------------
    def map_update(self, name: MapName, key: bytes, value: bytes) -> None:
        pending = self._kept()
        if pending is not None:
            pending.setdefault(name, {})[key] = value
            return
        self._write_now(name, key, value)

    def _write_now(self, name: MapName, key: bytes, value: bytes) -> None:
        """One entry written at once, whether writes are kept or not (what _flush falls back to)."""
        try:
            self._maps[name].update(key, value)
        except BaseException as exc:
            self._written(name, None)
            if isinstance(exc, libbpf.BpfCallError) and exc.errno in (errno.E2BIG, errno.ENOSPC):
                raise self._full(name) from exc
            raise
        self._written(name, [(key, value)])

    def map_update_batch(self, name: MapName, entries: list[tuple[bytes, bytes]]) -> tuple[int, Exception | None]:
        """Write ``entries`` (key, value) in one syscall, or one by one where the map type has no batch
        writes: (how many went in, in order; the error that stopped the rest, BlocklistFull when the map
        is full, or None)."""
        if not entries:
            return 0, None
        m = self._map(name)
        # The start's load: up to some 9,000 entries a map (BLOCKLIST's), looked at in C rather than in Python.
        ks, vs = zip(*entries, strict=True)
        if set(map(len, ks)) != {m.spec.key_size} or set(map(len, vs)) != {m.value_bytes}:
            # The kernel reads the keys and values packed end to end: one of another size would shift
            # every entry after it, and all be written wrong without an error.
            raise ValueError(f"{name}: a key or value of the wrong size in a batch write")
        try:
            keys, values = b"".join(ks), b"".join(vs)
            libbpf.map_update_batch(m.fd, keys, values, len(entries))
        except libbpf.BatchError as exc:
            if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP, ENOTSUPP) and exc.done == 0:
                return self._update_each(name, entries)  # no batch writes for this map type
            self._written(name, None)
            return exc.done, self._full(name) if exc.errno in (errno.E2BIG, errno.ENOSPC) else exc
        except BaseException:
            self._written(name, None)
            raise
        self._written(name, entries)
        return len(entries), None

    def _update_each(self, name: MapName, entries: list[tuple[bytes, bytes]]) -> tuple[int, Exception | None]:
        # Written now, not kept again: inside writes_batched() this is the flush's own fallback (a map type
        # without batch writes), and map_update() would only keep them again, to be dropped at the end.
        for i, (key, value) in enumerate(entries):
            try:
                self._write_now(name, key, value)
            except (OSError, ValueError, BlocklistFull) as exc:
                return i, exc
        return len(entries), None

    def _full(self, name: MapName) -> BlocklistFull:
        return BlocklistFull(
            f"{name} is full ({self._maps[name].max_entries} entries): rule refused, "
            "raise the capacity in the configuration or remove rules"
        )

    def map_replace(self, name: MapName, key: bytes, value: bytes) -> bool:
        """Overwrite an entry that exists (BPF_EXIST); False, nothing written, when it does not: an entry
        another tool may delete at any moment is never brought back by a write of ours."""
        try:
            self._map(name).update(key, value, libbpf.BPF_EXIST)
        except BaseException as exc:
            self._written(name, None)
            if isinstance(exc, libbpf.BpfCallError) and exc.errno == errno.ENOENT:
                return False
            raise
        self._written(name, [(key, value)])
        return True

    def map_delete(self, name: MapName, key: bytes) -> bool:
        self._written(name, None)
        return self._map(name).delete(key)

    def map_lookup(self, name: MapName, key: bytes) -> bytes | None:
        batched = self._kept()
        if batched is not None and self._maps[name].spec.type != LPM_TRIE:
            # One key's value is that key's write kept, or the map's: the rest may wait.
            kept = batched.get(name, {}).get(key)
            if kept is not None:
                return kept
            whole = self._array_read(name)
            if whole is not None:
                size = self._maps[name].value_bytes
                index = int.from_bytes(key, "little")
                return (whole[index * size : index * size + size] or None) if len(key) == 4 else None
            return self._maps[name].lookup(key)
        return self._map(name).lookup(key)

    def map_items(self, name: MapName) -> Iterator[tuple[bytes, bytes]]:
        return self._map(name).items()

    def map_dump(self, name: MapName) -> tuple[bytes, bytes, int]:
        """A hash map's entries in one batch read: keys and values packed, and their count."""
        m = self._map(name)
        return libbpf.map_lookup_batch(m.fd, m.spec.key_size, m.value_bytes, m.max_entries)

    def map_len(self, name: MapName) -> int:
        return sum(1 for _ in self._map(name).keys())

    def percpu_entries(self, name: MapName, index: int) -> list[bytes]:
        """One per-CPU array entry: its value on each possible CPU."""
        m = self._map(name)
        raw = m.lookup(index.to_bytes(4, "little")) or bytes(m.value_bytes)
        return [raw[i : i + m.spec.value_size] for i in range(0, len(raw), m.slot)]

    def percpu_table(self, name: MapName) -> list[bytes]:
        """Every entry of a per-CPU array, each as all CPUs' values concatenated."""
        return [value for _, value in self._map(name).items()]

    def percpu_clear(self, name: MapName, index: int) -> None:
        """Zero one per-CPU array entry on every CPU."""
        self.map_update(name, index.to_bytes(4, "little"), bytes(self._maps[name].value_bytes))

    def take_zeroed_hits(self) -> bool:
        """True once, to the first caller, when RULE_HITS is as the kernel created it (new maps: every
        slot zero, nothing to clear before a rule takes one); False after, and for pinned maps."""
        zeroed, self._hits_zeroed = self._hits_zeroed, False
        return zeroed

    def percpu_hits_raw(self, slots: int) -> tuple[bytes, int]:
        """The first ``slots`` RULE_HITS slots in one batch read, as the kernel lays them out (each slot
        ncpu (packets, last_hit_ns) pairs of u64), and ncpu."""
        m = self._map(MapName.RULE_HITS)
        width = abi.RULE_HIT.size  # 16: already 8-aligned, as per-CPU values are laid out
        n = max(0, min(slots, m.max_entries))
        _, values, count = libbpf.map_lookup_batch(m.fd, 4, width * m.cpus, n)
        return values[: count * width * m.cpus], m.cpus

    def rule_matches(self) -> int:
        """Packets any rule matched since the maps were created: EVENT_STATS summed over its reasons and CPUs
        (each match counts one event, delivered or lost: hit_reader.py)."""
        m = self._map(MapName.EVENT_STATS)
        total = 0
        for _, value in m.items():
            total += sum(int.from_bytes(value[i : i + 8], "little") for i in range(0, len(value), m.slot))
        return total

    def percpu_hits(self, slots: int | None = None) -> list[tuple[int, int]]:
        """RULE_HITS in one batch read: (packets summed, latest last_hit_ns) of the first ``slots``
        slots (all when None).  Reading all of them costs tens of ms (31,024 slots by default)."""
        m = self._map(MapName.RULE_HITS)
        raw, ncpu = self.percpu_hits_raw(m.max_entries if slots is None else slots)
        return sum_hits(raw, ncpu)

    @property
    def possible_cpus(self) -> int:
        return self._maps[MapName.STATS].cpus

    def read_config(self) -> tuple[int, int]:
        """(n_shapes, abi_version) of CONFIG."""
        n_shapes, version = self.read_config_raw()[:2]
        return n_shapes, version

    def read_config_raw(self) -> tuple[Any, ...]:
        raw = self.map_lookup(MapName.CONFIG, (0).to_bytes(4, "little")) or bytes(abi.CONFIG.size)
        return abi.CONFIG.unpack(raw)

    def write_config_raw(self, value: bytes) -> None:
        """CONFIG is written by prefilter.Prefilter, which keeps its masks."""
        self.map_update(MapName.CONFIG, (0).to_bytes(4, "little"), value)

    # --- events ------------------------------------------------------------------
    def open_events(self) -> None:
        """Start consuming EVENTS: read_events returns what arrived since."""
        events = self._maps[MapName.EVENTS]
        if ringbuf.direct_read_supported():
            try:
                self._ring = ringbuf.RingReader(events.fd, events.max_entries, abi.PACKET_EVENT)
                return
            except OSError:
                log.exception("mapping the EVENTS ring buffer failed: reading it through libbpf")
        size = abi.PACKET_EVENT.size

        def on_sample(data: bytes) -> bool:
            self._records.append(data[:size])
            # libbpf keeps consuming while records keep coming: under an event flood
            # one poll would never return.  Stopping after this record (consumed)
            # leaves the rest for the next poll.
            return len(self._records) < self._budget

        self._ringbuf = libbpf.RingBuffer(events.fd, on_sample)

    def read_events(self, timeout_ms: int, max_events: int = MAX_EVENTS_PER_POLL) -> ringbuf.EventRecords:
        """Waiting EVENTS records (at most max_events), waiting up to timeout_ms for the first."""
        if self._ring is not None:
            return self._ring.read(timeout_ms, max_events)
        if self._ringbuf is None:
            return ringbuf.EventRecords(b"", abi.PACKET_EVENT)
        self._budget = max_events
        self._records = []
        self._ringbuf.poll(timeout_ms)
        records, self._records = self._records, []
        return ringbuf.EventRecords(b"".join(records), abi.PACKET_EVENT)

    def close(self) -> None:
        if self._ring is not None:
            self._ring.close()
            self._ring = None
        if self._ringbuf is not None:
            self._ringbuf.close()
            self._ringbuf = None
        if self._loaded is not None:
            self._loaded.close()
            self._loaded = None
        if self._bpf is not None:
            self._bpf.cleanup()
            self._bpf = None


def _load_cached(cache: program_cache.ProgramCache) -> program_cache.LoadedProgram | None:
    """The program from the cache, or None (absent, refused, or refused by the kernel: one warning)."""
    prog = cache.read()
    if prog is None:
        return None
    missing = set(DATAPATH_MAPS) - {m.spec.name for m in prog.maps}
    if missing:
        why = f"it lacks the maps {', '.join(sorted(missing))}"
        program_cache.warn(cache.path, "ignored, the program compiled instead", why)
        return None
    try:
        return program_cache.load(prog)
    except (OSError, ValueError) as exc:
        program_cache.warn(cache.path, "ignored, the program compiled instead", f"the kernel refused it: {exc}")
        return None


class PreparedDatapath:
    """A Datapath compiled (or loaded from the compiled-program cache) in a thread of its own, started as
    soon as its configuration is known: BCC's compile (about a second, most of a first start) runs beside
    the rest of the start (the configuration's 10,000 rules checked, the modules imported), and the
    engine takes the result.  Unpinned and not offloaded only (the engine compiles those itself)."""

    def __init__(self, cfg: DatapathConfig, cache_dir: Path | None = None) -> None:
        self.cfg = cfg
        self.cache_dir = cache_dir
        self._dp: Datapath | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._compile, name="compile", daemon=True)
        self._thread.start()

    def _compile(self) -> None:
        try:
            self._dp = Datapath(self.cfg, cache_dir=self.cache_dir)
        except BaseException as exc:  # raised again by take(), in the thread that starts the engine
            self._error = exc

    def take(self) -> Datapath:
        """The compiled Datapath (waiting for it), now the caller's to close; its error if it failed."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        dp, self._dp = self._dp, None
        if dp is None:
            raise RuntimeError("the prepared datapath was taken already")
        return dp

    def close(self) -> None:
        """Unload it if nobody took it (waiting for a compile under way: it cannot be interrupted)."""
        self._thread.join()
        if self._dp is not None:
            self._dp.close()
            self._dp = None


def _indices(count: int) -> bytes:
    """0 .. count - 1 as 4-byte little-endian keys, back to back: an array's keys as a batch read gives them."""
    keys = array.array("I", range(count))  # "I" is 4 bytes on Linux
    if sys.byteorder == "big":
        keys.byteswap()
    return keys.tobytes()
