"""The decision stream's JSON parsed one array element at a time.

A full pull of 100,000 decisions is ~25 MB of JSON; ``json.loads`` parses it in one C call that holds
the GIL for a large fraction of a second, and the engine's tick (another thread) would wait that long.
Here the top-level object's arrays are decoded element by element (``JSONDecoder.raw_decode``), so the
interpreter can switch to the tick between elements.  Same result as ``json.loads`` for any object;
ValueError (json.JSONDecodeError) on malformed input.

With an ``element`` hook (the decision stream's reader), each element of those arrays goes to the hook as
soon as it is decoded, and the array keeps what the hook returns (nothing for SKIP): a LAPI, or what poses
as one, that sends 256 MiB of ``{},{},...`` would otherwise be held as 90 million dicts (some 6 GB, enough
to have the root agent killed).  An element that is an object or an array must then be a flat object of at
most ``max_element`` bytes, as a decision is, found so before it is decoded: ``[[],[],...]`` in one element
cannot grow either (a scalar is judged, and dropped, as any malformed entry is).  The top-level object
may then have MAX_KEYS keys at most: each one's value is kept, a scalar or an empty list, and a body of
millions of keys held some ten times its size (until session 26).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

_DECODER = json.JSONDecoder()
_WS = " \t\n\r"
SKIP = object()  # what an ``element`` hook returns for an element not to keep
MAX_KEYS = 64  # the top-level object's keys read with a hook (the decision stream has two: new, deleted)
Element = Callable[[str, Any], Any]
# An object with no object or array in it: strings (escapes included) and scalars between its braces, as
# runs ("unrolled": a run of plain characters, then a string and a run, again).  Each character can be taken
# one way only (a quote opens a string, a backslash an escape of two), so a text that does not match costs a
# linear scan, not a backtracking search.
_FLAT = re.compile(r'\{[^{}\[\]"]*(?:"[^"\\]*(?:\\.[^"\\]*)*"[^{}\[\]"]*)*\}', re.DOTALL)


def _skip(text: str, i: int) -> int:
    while i < len(text) and text[i] in _WS:
        i += 1
    return i


def _expect(text: str, i: int, char: str) -> int:
    i = _skip(text, i)
    if i >= len(text) or text[i] != char:
        raise json.JSONDecodeError(f"expected {char!r}", text, i)
    return i + 1


def _small(text: str, i: int, what: str, max_element: int) -> None:
    """Raise unless the value at text[i] is a scalar or a flat object of at most ``max_element`` bytes: what may
    be decoded whole from a body read with a hook (see the module's docstring)."""
    if text.startswith(("[", "{"), i) and not _FLAT.match(text, i, i + max_element):
        raise json.JSONDecodeError(f"{what} is not a flat object of at most {max_element} bytes", text, i)


def _array(text: str, i: int, key: str, element: Element | None, max_element: int) -> tuple[list[Any], int]:
    """The array starting at text[i] == '['; (its elements, or what ``element`` made of them; the index after
    it)."""
    out: list[Any] = []
    i = _skip(text, i + 1)
    if i < len(text) and text[i] == "]":
        return out, i + 1
    while True:
        i = _skip(text, i)
        if element is not None:
            _small(text, i, f"an element of {key!r}", max_element)  # a scalar is judged as any bad entry is
        value, i = _DECODER.raw_decode(text, i)
        if element is not None:
            value = element(key, value)  # the decoded element is freed here
        if value is not SKIP:
            out.append(value)
        i = _skip(text, i)
        if i < len(text) and text[i] == ",":
            i += 1
            continue
        return out, _expect(text, i, "]")


def loads(text: str, element: Element | None = None, max_element: int = 16 * 1024) -> Any:
    """``json.loads(text)``, yielding the GIL between the elements of a top-level object's arrays; with
    ``element``, those elements as the hook makes them, and nothing decoded whole that could grow (see the
    module's docstring)."""
    i = _skip(text, 0)
    if i >= len(text) or text[i] != "{":
        if element is not None:
            raise json.JSONDecodeError("the body is not a JSON object", text, i)
        return json.loads(text)  # not an object: small, or an error json.loads names
    out: dict[str, Any] = {}
    i = _skip(text, i + 1)
    if i < len(text) and text[i] == "}":
        i += 1
    else:
        while True:
            i = _skip(text, i)
            if element is not None and not text.startswith('"', i):
                raise json.JSONDecodeError("an object key is not a string", text, i)
            if element is not None and len(out) >= MAX_KEYS:
                raise json.JSONDecodeError(f"the body's object has more than {MAX_KEYS} keys", text, i)
            key, i = _DECODER.raw_decode(text, i)
            if not isinstance(key, str):
                raise json.JSONDecodeError("an object key is not a string", text, i)
            i = _skip(text, _expect(text, i, ":"))
            if i < len(text) and text[i] == "[":
                out[key], i = _array(text, i, key, element, max_element)
            else:
                if element is not None:
                    _small(text, i, f"the value of {key!r}", max_element)
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
