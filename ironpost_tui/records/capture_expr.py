"""``capture --filter EXPR``: the events filter's syntax, the terms the kernel can evaluate.

``src:ADDR[/LEN]``, ``dst:ADDR[/LEN]``, ``port:N`` (source or destination, as the kernel matches it),
``proto:NAME|N`` and ``rule:ID``, AND-ed, each at most once.  The other terms of the events filter
(``sport:``, ``dport:``, ``verdict:``, free words) are refused with a line saying why, rather than
captured more widely than asked.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ironpost_tui import filter_terms
from ironpost_tui.model import IPNetwork

KERNEL_FIELDS = ("src", "dst", "port", "proto", "rule")


@dataclass(frozen=True)
class CaptureExpression:
    src: IPNetwork | None = None
    dst: IPNetwork | None = None
    port: int = 0
    protocol: int = 0
    rule_id: str | None = None

    @classmethod
    def parse(cls, text: str) -> CaptureExpression:
        """ValueError, one line, for anything the kernel cannot evaluate or that cannot match."""
        words = filter_terms.words(text)
        if not words:
            raise ValueError("the filter is empty: give src:, dst:, port:, proto: or rule:")
        expr = cls()
        seen: set[str] = set()
        for word in words:
            name, colon, value = filter_terms.split(word)
            if not colon or name not in filter_terms.FIELDS:
                raise ValueError(
                    f"'{word}': a capture is chosen in the kernel, which matches only "
                    f"{', '.join(k + ':' for k in KERNEL_FIELDS)} (not words)"
                )
            if name not in KERNEL_FIELDS:
                why = "port: (either side)" if name in ("sport", "dport") else "the fields it can"
                raise ValueError(f"'{word}': the kernel cannot select by {name}: when capturing; use {why}")
            if not value:
                raise ValueError(f"'{word}': give a value after the colon")
            if name in seen:
                raise ValueError(f"'{word}': {name}: is given twice")
            seen.add(name)
            if name == "src":
                expr = replace(expr, src=filter_terms.network(word, value))
            elif name == "dst":
                expr = replace(expr, dst=filter_terms.network(word, value))
            elif name == "port":
                expr = replace(expr, port=filter_terms.port(word, value))
                if expr.port == 0:
                    raise ValueError(f"'{word}': port 0 would mean any port")
            elif name == "proto":
                expr = replace(expr, protocol=filter_terms.protocol(word, value))
                if expr.protocol == 0:
                    raise ValueError(f"'{word}': protocol 0 would mean any protocol")
            else:
                expr = replace(expr, rule_id=value)
        if expr.src is not None and expr.dst is not None and expr.src.version != expr.dst.version:
            raise ValueError("src: and dst: are of different IP versions: no packet has both")
        return expr
