"""The compiled program kept on disk, so that a start after the first loads it without BCC's compile.

BCC compiles ``bpf/ironpost_xdp.c`` with clang at every start (most of a start's time).  What the
kernel needs to load the same program again is small: its instructions, its license, and the maps it
refers to (``BPF_LD_IMM64`` with ``BPF_PSEUDO_MAP_FD``, whose immediate is a map's fd in the process
that loaded it).  A first start saves those; a later one creates the maps with libbpf, writes their
fds into the instructions and loads the result, and the verifier checks it as it checked BCC's.

The maps' BTF is kept (the key and value types BCC gave them: ``bpftool map dump`` formats entries
with it), the program's is not: BCC passes it with ``func_info`` and ``line_info``, which only
``bpftool``'s source-annotated dumps and the verifier's messages use.  The program has no
subprograms, spin locks, timers or kptrs, and loads and verifies the same without it
(tests/test_program_cache.py compares the verifier's instruction count).

The file is named by a key over everything the compile depends on (the sources, the flags, the
kernel, BCC's version, the CPU count the per-CPU maps are sized by): anything else is another file.
It runs as root and loads code from the file, so the file is read only when nobody but root could
have written it (trust.py's rules, a symbolic link refused, judged on the opened fd), and is parsed
defensively (program_file.py); a file that fails any check is ignored with one warning and the program
compiled.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ironpost_tui.cache_dir import CacheFile, CacheRefused
from ironpost_tui.kernel import abi, libbpf
from ironpost_tui.kernel.bpf_map import MapSpec
from ironpost_tui.kernel.program_file import (
    BPF_PSEUDO_MAP_FD,
    FORMAT,
    CachedMap,
    CachedProgram,
    decode,
    encode,
    ld_imm64,
)
from ironpost_tui.kernel.signals_held import signals_held

log = logging.getLogger(__name__)

DEFAULT_DIR = Path("/var/cache/ironpost-tui")
FILE_PREFIX = "ironpost_xdp-"
FILE_SUFFIX = ".prog"
MAX_FILE_BYTES = 4 * 1024 * 1024  # the program is about 30 KiB of instructions
KEEP_FILES = 8  # the newest files kept (other settings' programs); older ones are removed on a save


@dataclass(frozen=True)
class LoadedProgram:
    """A program loaded from the cache: its fd and its maps' fds by name, all the caller's to close."""

    prog_fd: int
    map_fds: dict[str, int]

    def close(self) -> None:
        for fd in (self.prog_fd, *self.map_fds.values()):
            with contextlib.suppress(OSError):
                os.close(fd)


def warn(path: Path, what: str, why: str) -> None:
    """The one line a cache file not used (or not saved) is worth."""
    why = " ".join(why.split())
    extra = {"event": "program_cache", "path": str(path), "why": why}
    log.warning("compiled-program cache %s %s (%s)", path, what, why, extra=extra)


# --------------------------------------------------------------------------- #
# the key


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(1 << 16)
    except OSError:
        return b""


def bcc_version() -> str:
    """BCC's version, read from its package without importing it (importing it loads LLVM)."""
    spec = importlib.util.find_spec("bcc")
    if spec is None or spec.origin is None:
        return ""
    return _read(str(Path(spec.origin).parent / "version.py")).decode(errors="replace")


def cache_key(cflags: Iterable[str], sources: Iterable[Path]) -> str:
    """sha256 over what the compiled program depends on."""
    h = hashlib.sha256()
    parts: list[Any] = [
        "ironpost-xdp-program",
        FORMAT,
        abi.IRONPOST_ABI_VERSION,
        list(cflags),
        [(p.name, hashlib.sha256(p.read_bytes()).hexdigest()) for p in sorted(sources)],
        os.uname().release,
        _read("/proc/version").decode(errors="replace"),
        _read("/sys/kernel/notes").hex(),  # the kernel's build id
        bcc_version(),
        libbpf.possible_cpus(),  # BCC sizes the perf event array by it
        os.sysconf("SC_PAGE_SIZE"),
    ]
    h.update(json.dumps(parts).encode())
    return h.hexdigest()


# --------------------------------------------------------------------------- #
# from and to a loaded program


def capture(
    key: str, name: str, license: str, insns: bytes, also: Mapping[str, int] | None = None
) -> CachedProgram | None:
    """What loading ``insns`` again needs, from the maps this process has open (the fds they name), and
    the maps ``also`` (name -> fd: maps the caller opens by name, which the program may not refer to, as
    BCC creates every map declared); None when the program refers to something the cache cannot make,
    or a map's name as the kernel keeps it (15 bytes) is not the caller's (then it is not cached)."""
    refs: dict[int, list[int]] = {}
    try:
        for index, src, imm in ld_imm64(insns):
            if src != BPF_PSEUDO_MAP_FD:
                log.debug("the program refers to a pseudo source %d: not cached", src)
                return None
            refs.setdefault(imm, []).append(index)
        for fd in (also or {}).values():
            refs.setdefault(fd, [])
        infos = {fd: libbpf.map_info(fd) for fd in refs}
    except (CacheRefused, OSError) as exc:
        log.debug("the program cannot be cached: %s", exc)
        return None
    renamed = [n for n, fd in (also or {}).items() if infos[fd].name != n]
    if renamed:
        log.debug("maps %s have other names in the kernel: not cached", renamed)
        return None
    maps = tuple(
        CachedMap(
            MapSpec(i.name, i.type, i.key_size, i.value_size, i.max_entries, i.flags),
            tuple(refs[fd]),
            (i.btf_key_type_id, i.btf_value_type_id),
        )
        for fd, i in infos.items()
    )
    if len({m.spec.name for m in maps}) != len(maps):
        log.debug("two of the program's maps have one name: not cached")
        return None
    btf = b""
    btf_ids = {i.btf_id for i in infos.values()} - {0}
    if len(btf_ids) == 1:  # BCC's one BTF object for the whole program
        try:
            btf = libbpf.btf_raw(btf_ids.pop())
        except OSError as exc:
            log.debug("the maps' BTF cannot be read (%s): cached without it", exc)
    if not btf:
        maps = tuple(CachedMap(m.spec, m.insns) for m in maps)
    return CachedProgram(key, name, license, insns, maps, btf)


def load(prog: CachedProgram) -> LoadedProgram:
    """Create the maps, write their fds into the instructions, load the program as XDP."""
    fds: dict[str, int] = {}
    btf_fd = -1
    try:
        if prog.btf:
            btf_fd = libbpf.btf_load(prog.btf)  # the kernel checks it; the maps keep it
        insns = bytearray(prog.insns)
        for m in prog.maps:
            s = m.spec
            btf = (btf_fd, *m.btf_types) if btf_fd >= 0 and any(m.btf_types) else None
            fd = fds[s.name] = libbpf.map_create(
                s.type, s.name, s.key_size, s.value_size, s.max_entries, s.flags, btf=btf
            )
            for i in m.insns:
                struct.pack_into("<i", insns, i * 8 + 4, fd)
        with signals_held():  # the verifier: not interrupted by a signal (EAGAIN)
            prog_fd = libbpf.prog_load(libbpf.BPF_PROG_TYPE_XDP, prog.name, prog.license, bytes(insns))
    except BaseException:
        LoadedProgram(-1, fds).close()
        raise
    finally:
        if btf_fd >= 0:
            os.close(btf_fd)
    return LoadedProgram(prog_fd, fds)


# --------------------------------------------------------------------------- #
# the directory


class ProgramCache:
    """The cache directory (root's own: created 0700) and the file for one key in it (cache_dir.py)."""

    def __init__(self, directory: Path, key: str, name: str) -> None:
        self.directory = directory
        self.key = key
        self.name = name
        self._file = CacheFile(directory, FILE_PREFIX, FILE_SUFFIX, key, MAX_FILE_BYTES, KEEP_FILES)
        self.path = self._file.path

    def _warn(self, what: str, why: str) -> None:
        warn(self.path, what, why)

    def read(self) -> CachedProgram | None:
        """The program in the file for this key, or None: absent (silently) or refused (one warning)."""
        return self._file.load(
            "program cache",
            lambda raw: decode(raw, self.key, self.name),
            lambda why: self._warn("ignored, the program compiled instead", why),
        )

    def write(self, prog: CachedProgram) -> bool:
        """Save ``prog`` atomically (mode 0600); a failure is one warning, never an error."""
        return self._file.save(encode(prog), lambda why: self._warn("not saved", why))
