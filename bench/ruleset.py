"""The benchmarks' rule load: a configuration file of 10,000 rules, as a threat feed and an operator
would write it, read back through the product's own path (``config.settings.load``).

* 8,744 exact IPv4 sources, drawn at random (seeded) from 198.18.0.0/16 and 198.19.192.0/18 (less the
  multi-field rules' addresses): scattered, as a feed's are, so that some ``EXACT4`` buckets overflow
  (their addresses are looked up in ``BLOCKLIST``).  Fewer overflow than with addresses drawn from the
  whole IPv4 space: EXACT4's multiplicative hash spreads addresses that differ in their low 17 bits
  evenly (one load in three has an overflowed bucket, against about 19 in 20 for a real feed);
* 1,000 prefixes: 500 IPv4 (/24 to /30, in 198.19.0.0/17) and 500 IPv6 (/40 to /64, in 2001:db8:8000::/33);
* 256 multi-field rules in 8 shapes (ports 80, 22, 443, 10000-10031, 20000-20031; addresses in
  198.19.128.0/17 and 2001:db8:4000::/34), each shape's rules drop and monitor in turn (``_shape``'s
  ``i`` even: monitor, odd: drop).

Nothing here covers an address in use on this host (``avoid``): the host's addresses are protected, and
a rule that would drop one is refused.  The frames of ``bench/b_prog.py`` take their addresses from
``Frames`` below, which says what each one meets.
"""

from __future__ import annotations

import ipaddress
import json
import random
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network

EXACT, PREFIXES, MULTI = 8_744, 1_000, 256
EXACT_POOLS = (ipaddress.ip_network("198.18.0.0/16"), ipaddress.ip_network("198.19.192.0/18"))
EXACT_HOLES = (ipaddress.ip_network("198.19.200.0/24"), ipaddress.ip_network("198.19.250.0/23"))
PREFIX4_POOL = ipaddress.ip_network("198.19.0.0/17")
PREFIX6_POOL = ipaddress.ip_network("2001:db8:8000::/33")
MULTI4 = ipaddress.ip_network("198.19.128.0/17")
MULTI6 = ipaddress.ip_network("2001:db8:4000::/34")
# The ports the multi-field rules use (and xdp-filter is given): shapes below.
SHAPE_PORTS = (80, 22, 443, *range(10000, 10032), *range(20000, 20032))


def addresses_in_use() -> list[IPNet]:
    """Every network assigned on this host now (``ip -o addr``): never covered by a bench rule."""
    out = subprocess.run(["ip", "-o", "addr", "show"], capture_output=True, text=True, check=True).stdout
    found: list[IPNet] = []
    for line in out.splitlines():
        parts = line.split()
        for fam in ("inet", "inet6"):
            if fam in parts:
                found.append(ipaddress.ip_interface(parts[parts.index(fam) + 1]).network)
    return found


@dataclass
class RuleSet:
    seed: int
    exact: list[ipaddress.IPv4Address] = field(default_factory=list)
    prefix4: list[ipaddress.IPv4Network] = field(default_factory=list)
    prefix6: list[ipaddress.IPv6Network] = field(default_factory=list)
    multi: list[dict[str, object]] = field(default_factory=list)  # TOML tables, ids included

    @property
    def count(self) -> int:
        return len(self.exact) + len(self.prefix4) + len(self.prefix6) + len(self.multi)

    def rules(self) -> Iterable[dict[str, object]]:
        for i, a in enumerate(self.exact):
            yield {"id": f"feed-{i}", "src_ip": str(a), "action": "drop"}
        for i, n in enumerate(self.prefix4):
            yield {"id": f"net4-{i}", "src_ip": str(n), "action": "drop"}
        for i, n in enumerate(self.prefix6):
            yield {"id": f"net6-{i}", "src_ip": str(n), "action": "drop"}
        yield from self.multi

    def toml(self, head: str = "") -> str:
        lines = [head] if head else []
        for rule in self.rules():
            lines.append("[[ebpf.rules]]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in rule.items()]
            lines.append("")
        return "\n".join(lines)

    def write(self, path: Path, head: str = "") -> Path:
        path.write_text(self.toml(head))
        return path

    def blocked_by_prefix(self, addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        nets: list[IPNet] = [*self.prefix4, *self.prefix6]
        return any(addr in n for n in nets if n.version == addr.version)


def _free(net: IPNet, avoid: list[IPNet]) -> bool:
    return not any(net.overlaps(a) for a in avoid if a.version == net.version)  # type: ignore[arg-type]


def build(seed: int, avoid: list[IPNet] | None = None, exact: int = EXACT, prefixes: int = PREFIXES,
          multi: int = MULTI) -> RuleSet:  # fmt: skip
    """The rule set of ``seed``: the same rules on every machine, but for those ``avoid`` rules out."""
    avoid = addresses_in_use() if avoid is None else avoid
    rng = random.Random(seed)
    rs = RuleSet(seed)
    total = sum(n.num_addresses for n in EXACT_POOLS)
    picked: set[int] = set()
    while len(rs.exact) < exact:
        i = rng.randrange(total)
        pool = EXACT_POOLS[0] if i < EXACT_POOLS[0].num_addresses else EXACT_POOLS[1]
        a = int(pool.network_address) + i % pool.num_addresses
        addr = ipaddress.IPv4Address(a)
        if a in picked or any(addr in h for h in EXACT_HOLES) or not _free(ipaddress.ip_network(addr), avoid):
            continue
        picked.add(a)
        rs.exact.append(addr)
    taken4: list[IPNet] = []
    while len(rs.prefix4) < prefixes // 2:
        plen = rng.randint(24, 30)
        off = rng.randrange(PREFIX4_POOL.num_addresses >> (32 - plen)) << (32 - plen)
        n4 = ipaddress.IPv4Network((int(PREFIX4_POOL.network_address) + off, plen))
        if _free(n4, avoid) and _free(n4, taken4):
            taken4.append(n4)
            rs.prefix4.append(n4)
    taken6: list[IPNet] = []
    while len(rs.prefix6) < prefixes - prefixes // 2:
        plen = rng.choice((40, 44, 48, 48, 48, 56, 64, 64))
        off = rng.randrange(PREFIX6_POOL.num_addresses >> (128 - plen)) << (128 - plen)
        n6 = ipaddress.IPv6Network((int(PREFIX6_POOL.network_address) + off, plen))
        if _free(n6, avoid) and _free(n6, taken6):
            taken6.append(n6)
            rs.prefix6.append(n6)
    for i in range(multi):
        rule = _shape(i % 8, i // 8)
        # Within each shape, drop and monitor alternate (the i // 8-th rule of the shape): every shape has both.
        # A drop rule on a source in use here would be refused (anti-lockout: the host's own address): it
        # monitors instead.
        src = rule.get("src_ip")
        drop = (i // 8) % 2 == 1 and (src is None or _free(ipaddress.ip_network(str(src)), avoid))
        rule = {"id": f"multi-{i}", **rule, "action": "drop" if drop else "monitor"}
        rs.multi.append(rule)
    return rs


def _shape(shape: int, i: int) -> dict[str, object]:
    """Eight shapes of multi-field rule, the ``i``-th rule of each (i < 32)."""
    if shape == 0:
        return {"dst_ip": f"198.19.200.{i}", "dst_port": 80, "protocol": 6}
    if shape == 1:
        return {"dst_port": 10000 + i, "protocol": 17}
    if shape == 2:
        return {"src_ip": f"198.19.{160 + i}.0/24", "dst_port": 22}
    if shape == 3:
        return {"dst_ip": f"2001:db8:4000:{i:x}::/64", "dst_port": 443, "protocol": 6}
    if shape == 4:
        return {"dst_ip": f"198.19.{208 + i}.0/24", "protocol": 1}
    if shape == 5:
        return {"src_ip": f"2001:db8:4001:{i:x}::/64", "protocol": 58}
    if shape == 6:
        return {"dst_port": 20000 + i}
    return {"src_ip": f"198.19.250.{i}", "dst_ip": "198.19.251.1"}
