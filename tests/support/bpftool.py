"""What the kernel holds, read through bpftool: a program's maps, their dumps and keys.

    maps = prog_maps(prog_id, expect=("BLOCKLIST",))
    assert map_keys(maps["BLOCKLIST"]) == [ipaddress.IPv4Address(lab.ns_ip4).packed]

These read the kernel's maps themselves, not what the engine believes it wrote.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Iterable
from typing import Any


def run(*args: str) -> str:
    """``bpftool ARGS``'s stdout; AssertionError when it fails."""
    proc = subprocess.run(["bpftool", *args], capture_output=True, text=True)
    assert proc.returncode == 0, f"bpftool {' '.join(args)}: {proc.stderr}"
    return proc.stdout


def run_json(*args: str) -> Any:
    """``bpftool -j ARGS``, parsed."""
    return json.loads(run("-j", *args))


def prog_maps(prog_id: int, expect: Iterable[str] = ()) -> dict[str, int]:
    """Map name -> map id, for the maps of ``prog_id``; AssertionError when a name in ``expect`` is not one."""
    info = run_json("prog", "show", "id", str(prog_id))
    assert isinstance(info, dict)
    out = {}
    for map_id in info["map_ids"]:
        m = run_json("map", "show", "id", str(map_id))
        assert isinstance(m, dict)
        out[m["name"]] = map_id
    missing = [n for n in expect if n not in out]
    assert not missing, f"prog {prog_id} has no map named {missing}: {out}"
    return out


def map_dump(map_id: int) -> str:
    """The raw ``bpftool -j map dump id MAP_ID`` output."""
    return run("-j", "map", "dump", "id", str(map_id))


def dump_keys(dump: str) -> list[bytes]:
    """The keys of a ``bpftool -j map dump`` output, sorted."""
    return sorted(bytes(int(b, 16) for b in e["key"]) for e in json.loads(dump))


def map_keys(map_id: int) -> list[bytes]:
    """The keys in map ``map_id``, sorted."""
    return dump_keys(map_dump(map_id))


def hexbytes(data: bytes) -> list[str]:
    """``data`` as bpftool's command line takes a key or value: ``hex 0a 0b ...``."""
    return ["hex", *(f"{b:02x}" for b in data)]


# --------------------------------------------------------------------------- #
# BLOCKLIST as another tool writes it (the seed's layout; README, "BLOCKLIST for other writers")

SEED_VALUE_SIZE = 20  # struct blocklist_value: the seed's BlocklistValue, action first, the rest 0


def seed_value(action: int = 1) -> bytes:
    """The value another tool writes: the action (DROP 1, MONITOR 2, PASS 0), then zeros."""
    return bytes([action]) + bytes(SEED_VALUE_SIZE - 1)


def blocklist_update(handle: Iterable[str], addr: str, action: int = 1) -> None:
    """``bpftool map update HANDLE key hex .. value hex ..``: ``addr`` (IPv4) with ``action``, as the seed has it.
    ``handle`` is ``("id", N)``, ``("pinned", PATH)`` or ``("name", "BLOCKLIST")``."""
    key = ipaddress.IPv4Address(addr).packed
    run("map", "update", *handle, "key", *hexbytes(key), "value", *hexbytes(seed_value(action)))


def blocklist_delete(handle: Iterable[str], addr: str) -> None:
    run("map", "delete", *handle, "key", *hexbytes(ipaddress.IPv4Address(addr).packed))


def blocklist_lookup(handle: Iterable[str], addr: str) -> bytes | None:
    """The value BLOCKLIST holds for ``addr``, or None (``bpftool map lookup``)."""
    key = ipaddress.IPv4Address(addr).packed
    proc = subprocess.run(["bpftool", "-j", "map", "lookup", *handle, "key", *hexbytes(key)], capture_output=True,
                          text=True)  # fmt: skip
    found = json.loads(proc.stdout or "null")
    if found is None:  # no such key (bpftool exits 254 and prints null)
        assert proc.returncode != 0 and not proc.stderr.strip(), proc.stderr
        return None
    assert proc.returncode == 0, proc.stderr
    return bytes(int(b, 16) for b in found["value"])


def percpu_sums(handle: Iterable[str], fmt: Any) -> dict[int, tuple[int, ...]]:
    """A per-CPU array (``bpftool map dump``) as key -> its value summed over CPUs, field by field
    (``fmt`` a struct.Struct of the value, e.g. abi.PROTO_STATS)."""
    out = {}
    for entry in run_json("map", "dump", *handle):
        index = int.from_bytes(bytes(int(b, 16) for b in entry["key"]), "little")
        fields = [fmt.unpack(bytes(int(b, 16) for b in v["value"])) for v in entry["values"]]
        out[index] = tuple(sum(col) for col in zip(*fields, strict=True))
    return out


def net_xdp(iface: str) -> list[int]:
    """The ids of the XDP programs ``bpftool net show dev IFACE`` lists on ``iface`` (link-attached or not)."""
    out = run_json("net", "show", "dev", iface)
    ids: list[int] = []
    for entry in out if isinstance(out, list) else [out]:
        for xdp in entry.get("xdp", []):
            if "id" in xdp:
                ids.append(int(xdp["id"]))
            ids += [int(m["id"]) for m in xdp.get("multi_attachments", [])]
    return ids
