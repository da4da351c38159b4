"""What the kernel holds, read through bpftool: a program's maps, their dumps and keys.

    maps = prog_maps(prog_id, expect=("BLOCKLIST",))
    assert map_keys(maps["BLOCKLIST"]) == [ipaddress.IPv4Address(lab.ns_ip4).packed]

These read the kernel's maps themselves, not what the engine believes it wrote.
"""

from __future__ import annotations

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
