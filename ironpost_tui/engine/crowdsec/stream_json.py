"""The decision stream's JSON parsed one array element at a time.

A full pull of 100,000 decisions is ~25 MB of JSON; ``json.loads`` parses it in one C call that holds
the GIL for a large fraction of a second, and the engine's tick (another thread) would wait that long.
Here the top-level object's arrays are decoded element by element (``JSONDecoder.raw_decode``), so the
interpreter can switch to the tick between elements.  Same result as ``json.loads`` for any object;
ValueError (json.JSONDecodeError) on malformed input.
"""

from __future__ import annotations

import json
from typing import Any

_DECODER = json.JSONDecoder()
_WS = " \t\n\r"


def _skip(text: str, i: int) -> int:
    while i < len(text) and text[i] in _WS:
        i += 1
    return i


def _expect(text: str, i: int, char: str) -> int:
    i = _skip(text, i)
    if i >= len(text) or text[i] != char:
        raise json.JSONDecodeError(f"expected {char!r}", text, i)
    return i + 1


def _array(text: str, i: int) -> tuple[list[Any], int]:
    """The array starting at text[i] == '['; (its elements, the index after it)."""
    out: list[Any] = []
    i = _skip(text, i + 1)
    if i < len(text) and text[i] == "]":
        return out, i + 1
    while True:
        value, i = _DECODER.raw_decode(text, _skip(text, i))
        out.append(value)
        i = _skip(text, i)
        if i < len(text) and text[i] == ",":
            i += 1
            continue
        return out, _expect(text, i, "]")


def loads(text: str) -> Any:
    """``json.loads(text)``, yielding the GIL between the elements of a top-level object's arrays."""
    i = _skip(text, 0)
    if i >= len(text) or text[i] != "{":
        return json.loads(text)  # not an object: small, or an error json.loads names
    out: dict[str, Any] = {}
    i = _skip(text, i + 1)
    if i < len(text) and text[i] == "}":
        i += 1
    else:
        while True:
            key, i = _DECODER.raw_decode(text, _skip(text, i))
            if not isinstance(key, str):
                raise json.JSONDecodeError("an object key is not a string", text, i)
            i = _skip(text, _expect(text, i, ":"))
            if i < len(text) and text[i] == "[":
                out[key], i = _array(text, i)
            else:
                out[key], i = _DECODER.raw_decode(text, i)
            i = _skip(text, i)
            if i < len(text) and text[i] == ",":
                i += 1
                continue
            i = _expect(text, i, "}")
            break
    if _skip(text, i) != len(text):
        raise json.JSONDecodeError("extra data", text, i)
    return out
