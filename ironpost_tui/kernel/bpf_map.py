"""One BPF map by its fd: the few operations the Datapath needs, through libbpf.

The same for a map BCC created (a compiled program) and one made from the compiled-program cache, so
nothing above depends on which loaded the program.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from ironpost_tui.kernel import libbpf

# enum bpf_map_type values whose value is one slot per possible CPU, each 8-aligned.
PERCPU_TYPES = frozenset({5, 6, 10})  # PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH
ARRAY = 2  # BPF_MAP_TYPE_ARRAY: keys are the indices 0 .. max_entries - 1, every one present
LPM_TRIE = 11  # a lookup finds the longest prefix holding the key's address, not the key alone


@dataclass(frozen=True)
class MapSpec:
    """What a map is made of: what bpf_map_create takes (the name as the kernel keeps it, <= 15 bytes)."""

    name: str
    type: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int

    @classmethod
    def of(cls, fd: int) -> MapSpec:
        info = libbpf.map_info(fd)
        return cls(info.name, info.type, info.key_size, info.value_size, info.max_entries, info.flags)


class BpfMap:
    """A map's fd (not owned: whoever loaded the program closes it) and its layout."""

    def __init__(self, fd: int, spec: MapSpec) -> None:
        self.fd = fd
        self.spec = spec
        percpu = spec.type in PERCPU_TYPES
        self.cpus = libbpf.possible_cpus() if percpu else 1
        # A per-CPU value as the syscalls move it: every CPU's slot, each rounded up to 8 bytes.
        self.slot = (spec.value_size + 7) & ~7 if percpu else spec.value_size
        self.value_bytes = self.slot * self.cpus

    @classmethod
    def of(cls, fd: int) -> BpfMap:
        return cls(fd, MapSpec.of(fd))

    @property
    def max_entries(self) -> int:
        return self.spec.max_entries

    def lookup(self, key: bytes) -> bytes | None:
        return libbpf.map_lookup(self.fd, key, self.value_bytes)

    def update(self, key: bytes, value: bytes, flags: int = libbpf.BPF_ANY) -> None:
        if len(key) != self.spec.key_size or len(value) != self.value_bytes:
            raise ValueError(
                f"{self.spec.name}: key of {len(key)} bytes, value of {len(value)}: "
                f"the map takes {self.spec.key_size} and {self.value_bytes}"
            )
        libbpf.map_update(self.fd, key, value, flags)

    def delete(self, key: bytes) -> bool:
        return libbpf.map_delete(self.fd, key)

    def keys(self) -> Iterator[bytes]:
        return libbpf.map_keys(self.fd, self.spec.key_size)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every entry (one lookup per key: an entry deleted meanwhile is left out)."""
        for key in list(self.keys()):
            value = self.lookup(key)
            if value is not None:
                yield key, value
