"""Reading a request head (request line and header fields, RFC 9112) within the endpoint's limits.

Only what a metrics endpoint needs: GET and HEAD requests of HTTP/1.0 and 1.1 in origin form.
Whatever does not fit is a ``HeadError`` carrying the status to answer with before closing:
a line longer than ``max_line`` (414 for the request line, 431 for a header), more than
``max_headers`` headers or ``max_header_bytes`` in all (431), a malformed line, an obsolete
line folding, NUL or a bare CR (400), another HTTP version (505).  The caller puts the deadline
around it; a line is never buffered past the limit (the stream's own limit stops it).

Bytes are kept as Latin-1 text (every byte is one character), as HTTP's field values are
octets: a non-ASCII value reaches whoever reads it, who decides (an ``Authorization`` that is
not ASCII is malformed, for one).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from http import HTTPStatus

from ironpost_tui.metrics.http.limits import MAX_HEADER_BYTES, MAX_HEADERS, MAX_LINE

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_TARGET = re.compile(rb"/[\x21-\x7e]*\Z")
_VERSION = re.compile(rb"HTTP/(\d)\.(\d)\Z")
_LEADING_EMPTY_LINES = 4  # skipped before the request line, as RFC 9112 2.2 asks


class HeadError(Exception):
    """The request cannot be served: answer ``status`` and close."""

    def __init__(self, status: HTTPStatus, why: str) -> None:
        super().__init__(why)
        self.status = status
        self.why = why


@dataclass(frozen=True)
class RequestHead:
    method: str
    target: str
    version: str  # "HTTP/1.1" or "HTTP/1.0"
    headers: tuple[tuple[str, str], ...]  # (lower-case name, value), in order

    def values(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n == name]

    def get(self, name: str, default: str = "") -> str:
        found = self.values(name)
        return found[0] if found else default

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def keep_alive(self) -> bool:
        tokens = {t.strip().lower() for v in self.values("connection") for t in v.split(",")}
        if self.version == "HTTP/1.0":
            return "keep-alive" in tokens
        return "close" not in tokens

    @property
    def chunked(self) -> bool:
        """A body framed by Transfer-Encoding: its length is not known up front."""
        return bool(self.values("transfer-encoding"))

    @property
    def content_length(self) -> int:
        """The body's length (0 without one); checked well-formed by ``read_head``."""
        found = self.values("content-length")
        return int(found[0].split(",")[0].strip()) if found else 0


async def read_line(
    reader: asyncio.StreamReader, max_line: int, status: HTTPStatus, first: bytes = b""
) -> bytes | None:
    """One line without its ending (``first``: its first byte, already read); None at the end of
    the stream before any byte."""
    try:
        line = first if first.endswith(b"\n") else first + await reader.readuntil(b"\n")
    except asyncio.LimitOverrunError:
        raise HeadError(status, f"a line longer than {max_line} bytes") from None
    except asyncio.IncompleteReadError as exc:
        if not exc.partial and not first:
            return None
        raise ConnectionResetError("the client closed the connection in the middle of a request") from None
    line = line[:-2] if line.endswith(b"\r\n") else line[:-1]
    if len(line) > max_line:
        raise HeadError(status, f"a line longer than {max_line} bytes")
    if b"\r" in line or b"\0" in line:
        raise HeadError(HTTPStatus.BAD_REQUEST, "a bare CR or a NUL in the request head")
    return line


async def read_head(
    reader: asyncio.StreamReader,
    max_line: int = MAX_LINE,
    max_headers: int = MAX_HEADERS,
    max_header_bytes: int = MAX_HEADER_BYTES,
    first: bytes = b"",
) -> RequestHead | None:
    """The next request head from ``reader`` (``first``: its first byte, if already read); None
    when the client closed the connection between requests.  The reader's own limit must be at
    least ``max_line + 2``."""
    total = 0
    for _ in range(_LEADING_EMPTY_LINES + 1):
        line = await read_line(reader, max_line, HTTPStatus.REQUEST_URI_TOO_LONG, first)
        first = b""
        if line is None:
            return None
        total += len(line) + 2
        if line:
            break
    else:
        raise HeadError(HTTPStatus.BAD_REQUEST, "empty lines instead of a request")
    method, target, version = _request_line(line)
    headers: list[tuple[str, str]] = []
    while True:
        line = await read_line(reader, max_line, HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)
        if line is None:
            raise ConnectionResetError("the client closed the connection in the middle of a request")
        total += len(line) + 2
        if total > max_header_bytes:
            raise HeadError(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, f"a head over {max_header_bytes} bytes")
        if not line:
            break
        if len(headers) >= max_headers:
            raise HeadError(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, f"more than {max_headers} headers")
        headers.append(_field(line))
    head = RequestHead(method, target, version, tuple(headers))
    _check_framing(head)
    return head


def _request_line(line: bytes) -> tuple[str, str, str]:
    parts = line.split(b" ")
    if len(parts) != 3 or not _TOKEN.match(parts[0]) or not parts[1]:
        raise HeadError(HTTPStatus.BAD_REQUEST, "not a request line")
    method, target, version = parts
    m = _VERSION.match(version)
    if m is None:
        raise HeadError(HTTPStatus.BAD_REQUEST, "not an HTTP version")
    if m.group(1) != b"1" or m.group(2) not in (b"0", b"1"):
        raise HeadError(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, "only HTTP/1.0 and HTTP/1.1")
    if not _TARGET.match(target):
        raise HeadError(HTTPStatus.BAD_REQUEST, "the target is not a path")
    return method.decode("ascii"), target.decode("ascii"), version.decode("ascii")


def _field(line: bytes) -> tuple[str, str]:
    if line[:1] in (b" ", b"\t"):
        raise HeadError(HTTPStatus.BAD_REQUEST, "obsolete line folding")
    name, sep, value = line.partition(b":")
    if not sep or not _TOKEN.match(name):  # no whitespace before the colon either (RFC 9112 5.1)
        raise HeadError(HTTPStatus.BAD_REQUEST, "a header line that is not name: value")
    return name.decode("ascii").lower(), value.strip(b" \t").decode("latin-1")


def _check_framing(head: RequestHead) -> None:
    """Content-Length well-formed (one value, repeated identically at most), never with
    Transfer-Encoding: the two ways a body is misread as the next request (RFC 9112 6.3)."""
    lengths = {v.strip() for value in head.values("content-length") for v in value.split(",")}
    if lengths and head.chunked:
        raise HeadError(HTTPStatus.BAD_REQUEST, "both Content-Length and Transfer-Encoding")
    if len(lengths) > 1 or any(not v.isdigit() or not v.isascii() or len(v) > 18 for v in lengths):
        raise HeadError(HTTPStatus.BAD_REQUEST, "a malformed Content-Length")
