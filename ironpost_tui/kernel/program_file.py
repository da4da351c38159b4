"""The compiled-program cache's file format: a magic line and one JSON object, parsed defensively.

What a file holds (program_cache.py says why and when it is read): the program's name and license, its
instructions and the maps' BTF (base64, each with its sha256), and each map as BCC created it with the
``BPF_LD_IMM64`` instructions that load its fd.  ``decode`` checks every field's type and range and
that every map load belongs to exactly one map (an fd left unpatched would load whatever that number
is in the loading process); what it cannot judge (the instructions, the BTF) the kernel does.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import struct
from dataclasses import dataclass
from typing import Any

from ironpost_tui.cache_dir import CacheRefused
from ironpost_tui.kernel.bpf_map import MapSpec

FORMAT = 1
MAGIC = b"ironpost-xdp-program\n"
MAX_MAPS = 64

BPF_LD_IMM64 = 0x18  # BPF_LD | BPF_IMM | BPF_DW: two instruction slots
BPF_PSEUDO_MAP_FD = 1
_INSN = struct.Struct("<BBhi")  # code, dst_reg:4 src_reg:4, off, imm
_NAME = re.compile(r"[A-Za-z0-9_.]{1,15}")
_U32 = 1 << 32


@dataclass(frozen=True)
class CachedMap:
    spec: MapSpec
    insns: tuple[int, ...]  # the BPF_LD_IMM64 instructions that refer to this map
    btf_types: tuple[int, int] = (0, 0)  # its key's and value's type ids in the program's BTF (0: none)


@dataclass(frozen=True)
class CachedProgram:
    key: str
    name: str
    license: str
    insns: bytes
    maps: tuple[CachedMap, ...]
    btf: bytes = b""  # the BTF the maps' types are in (empty: none)


def ld_imm64(insns: bytes) -> list[tuple[int, int, int]]:
    """(index, src_reg, imm) of every BPF_LD_IMM64 whose source is a pseudo one (not a constant)."""
    n = len(insns) // 8
    out = []
    i = 0
    while i < n:
        code, regs, _off, imm = _INSN.unpack_from(insns, i * 8)
        if code == BPF_LD_IMM64:
            if i + 1 >= n:
                raise CacheRefused(f"instruction {i} is a 16-byte load cut short")
            if regs >> 4:
                out.append((i, regs >> 4, imm))
            i += 2
        else:
            i += 1
    return out


def encode(prog: CachedProgram) -> bytes:
    doc = {
        "format": FORMAT,
        "key": prog.key,
        "name": prog.name,
        "license": prog.license,
        "insns": base64.b64encode(prog.insns).decode(),
        "insns_sha256": hashlib.sha256(prog.insns).hexdigest(),
        "btf": base64.b64encode(prog.btf).decode(),
        "btf_sha256": hashlib.sha256(prog.btf).hexdigest(),
        "maps": [
            {
                "name": m.spec.name,
                "type": m.spec.type,
                "key_size": m.spec.key_size,
                "value_size": m.spec.value_size,
                "max_entries": m.spec.max_entries,
                "flags": m.spec.flags,
                "insns": list(m.insns),
                "btf_key_type_id": m.btf_types[0],
                "btf_value_type_id": m.btf_types[1],
            }
            for m in prog.maps
        ],
    }
    return MAGIC + json.dumps(doc, separators=(",", ":")).encode() + b"\n"


def _field(doc: dict[str, Any], name: str, kind: type) -> Any:
    value = doc.get(name)
    if type(value) is not kind:  # not isinstance: True is no int here
        raise CacheRefused(f"its field {name!r} is missing or not of type {kind.__name__}")
    return value


def _u32(doc: dict[str, Any], name: str) -> int:
    value: int = _field(doc, name, int)
    if not 0 <= value < _U32:
        raise CacheRefused(f"its field {name!r} is out of range")
    return value


def decode(data: bytes, key: str, name: str) -> CachedProgram:
    """The program a file holds, checked field by field; CacheRefused says what is wrong."""
    if not data.startswith(MAGIC):
        raise CacheRefused("it is not an ironpost program cache file (no magic)")
    try:
        doc = json.loads(data[len(MAGIC) :])
    except (ValueError, RecursionError) as exc:
        raise CacheRefused(f"it is not valid JSON ({type(exc).__name__}): truncated or damaged") from None
    if type(doc) is not dict:
        raise CacheRefused("it holds no JSON object")
    if _field(doc, "format", int) != FORMAT:
        raise CacheRefused(f"it is of format {doc['format']}, this version reads {FORMAT}")
    if _field(doc, "key", str) != key:
        raise CacheRefused("it was written for other sources, settings or kernel (its key differs)")
    if _field(doc, "name", str) != name:
        raise CacheRefused(f"it holds a program named {doc['name']!r}, not {name!r}")
    license = _field(doc, "license", str)
    if not license.isascii() or not license.isprintable() or not 0 < len(license) <= 64:
        raise CacheRefused("its license is not a short ASCII string")
    insns = _blob(doc, "insns", "instructions")
    if not insns or len(insns) % 8:
        raise CacheRefused(f"its instructions are {len(insns)} bytes, not a whole number of 8-byte instructions")
    btf = _blob(doc, "btf", "BTF")
    raw_maps = _field(doc, "maps", list)
    if len(raw_maps) > MAX_MAPS:
        raise CacheRefused(f"it lists {len(raw_maps)} maps, more than {MAX_MAPS}")
    pseudo = {i: src for i, src, _ in ld_imm64(insns)}
    if any(src != BPF_PSEUDO_MAP_FD for src in pseudo.values()):
        raise CacheRefused("its instructions refer to something other than maps by fd")
    maps: list[CachedMap] = []
    seen: set[int] = set()
    for raw in raw_maps:
        if type(raw) is not dict:
            raise CacheRefused("a map entry is not an object")
        map_name = _field(raw, "name", str)
        if not _NAME.fullmatch(map_name) or map_name in {m.spec.name for m in maps}:
            raise CacheRefused(f"a map's name {map_name[:20]!r} is not a map name, or is there twice")
        spec = MapSpec(
            map_name, _u32(raw, "type"), _u32(raw, "key_size"), _u32(raw, "value_size"),
            _u32(raw, "max_entries"), _u32(raw, "flags"),
        )  # fmt: skip
        btf_types = (_u32(raw, "btf_key_type_id"), _u32(raw, "btf_value_type_id"))
        if any(btf_types) and not btf:
            raise CacheRefused(f"map {map_name} has BTF types, and the file no BTF")
        refs = _field(raw, "insns", list)
        for i in refs:
            if type(i) is not int or i not in pseudo or i in seen:
                raise CacheRefused(f"map {map_name} names instruction {str(i)[:12]}, not a map load of its own")
            seen.add(i)
        maps.append(CachedMap(spec, tuple(refs), btf_types))
    if seen != set(pseudo):
        # An fd left unpatched would load whatever that number is in this process: never.
        raise CacheRefused("some of its map loads belong to no map")
    return CachedProgram(key, name, license, insns, tuple(maps), btf)


def _blob(doc: dict[str, Any], name: str, what: str) -> bytes:
    """A base64 field, checked against its sha256 (``name``_sha256)."""
    try:
        data = base64.b64decode(_field(doc, name, str), validate=True)
    except binascii.Error:
        raise CacheRefused(f"its {what} field is not base64") from None
    if hashlib.sha256(data).hexdigest() != _field(doc, f"{name}_sha256", str):
        raise CacheRefused(f"its {what} field does not match its checksum: damaged")
    return data
