"""A bounded channel from the engine's thread to asyncio code: the seed's event receiver.

The engine puts a tick's values in at once and never waits: what does not fit is dropped and
counted (``dropped``), as tokio's ``try_send`` on a full channel would.  The consumer awaits
them in order, as an async iterator or with ``recv()``; when the engine stops, the consumer gets
what is left, then the end (or the error the engine stopped on).
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class Receiver(Generic[T]):
    """The receiving end: ``async for value in receiver`` (or ``await receiver.recv()``).

    ``capacity`` values wait at most; ``dropped`` counts those that came while it was full.
    Several consumers may wait at once: each value goes to one of them."""

    def __init__(self, capacity: int) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"channel capacity {capacity!r}: it must be a whole number of at least 1")
        self.capacity = capacity
        self._items: deque[T] = deque()
        self._lock = threading.Lock()
        self._dropped = 0
        self._sent = 0
        self._closed = False
        self._error: BaseException | None = None
        self._waiters: list[asyncio.Future[None]] = []  # consumers waiting for a value

    # --- the engine's side (any thread) ----------------------------------------
    def put_many(self, values: Sequence[T]) -> None:
        """Queue what fits, count the rest; never waits."""
        if not values:
            return
        with self._lock:
            if self._closed:
                return
            room = self.capacity - len(self._items)
            if room >= len(values):
                self._items.extend(values)
            else:
                self._items.extend(values[: max(0, room)])
                self._dropped += len(values) - max(0, room)
            self._sent += len(values)
            waiters, self._waiters = self._waiters, []
        self._wake(waiters)

    def close(self, error: BaseException | None = None) -> None:
        """No more values: the consumer gets those queued, then the end (or ``error``)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._error = error
            waiters, self._waiters = self._waiters, []
        self._wake(waiters)

    @staticmethod
    def _wake(waiters: list[asyncio.Future[None]]) -> None:
        for waiter in waiters:
            try:
                waiter.get_loop().call_soon_threadsafe(_resolve, waiter)
            except RuntimeError:  # that consumer's loop has closed: it waits no more
                pass

    # --- the consumer's side (the event loop) ----------------------------------
    @property
    def dropped(self) -> int:
        """Values that came while the channel was full: never queued, never to be received."""
        return self._dropped

    @property
    def sent(self) -> int:
        """Every value the engine put in, queued or dropped."""
        return self._sent

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        """Values waiting now."""
        return len(self._items)

    def try_recv(self) -> T | None:
        """The next value if one is waiting, else None (never waits)."""
        with self._lock:
            return self._items.popleft() if self._items else None

    async def recv(self) -> T | None:
        """The next value, waiting for it; None once the engine has stopped and all are received."""
        try:
            return await self.__anext__()
        except StopAsyncIteration:
            return None

    def __aiter__(self) -> Receiver[T]:
        return self

    async def __anext__(self) -> T:
        while True:
            with self._lock:
                if self._items:
                    return self._items.popleft()
                if self._closed:
                    if self._error is not None:
                        raise self._error
                    raise StopAsyncIteration
                waiter = asyncio.get_running_loop().create_future()
                self._waiters.append(waiter)
            try:
                await waiter
            finally:
                with self._lock:
                    if waiter in self._waiters:
                        self._waiters.remove(waiter)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
