"""The controller's end of the command-line socket: ``/run/ironpost/IFACE.sock``, root's alone.

Who may talk to it, and how much:

* The directory is root's and 0700 (made so, or refused when it is a link or another user's);
  the socket is 0600.  Made under a temporary name and renamed into place, so nothing planted at
  the path is ever followed, and whatever was left there (the socket of a controller that died,
  a link) is replaced: the interface lock this controller holds says no live one serves it.
* Every connection's peer is asked of the kernel (SO_PEERCRED): anyone but uid 0 is refused
  even if the permissions were loosened.
* One request per connection, one line of at most MAX_REQUEST_BYTES, which must arrive whole
  within REQUEST_SECS (a client sending a byte at a time is cut off, not waited for); the answer
  must be taken within ANSWER_SECS.  At most MAX_CLIENTS connections are served at once; beyond
  that a client is told the controller is busy.
"""

from __future__ import annotations

import logging
import os
import secrets
import select
import socket
import stat
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ironpost_tui.engine.control_socket.protocol import MAX_REQUEST_BYTES, BadRequest, encode_failure
from ironpost_tui.errors import IronpostError, NotPermitted
from ironpost_tui.rules.audit import Peer

log = logging.getLogger("ironpost.cli")

REQUEST_SECS = 5.0
ANSWER_SECS = 10.0
MAX_CLIENTS = 8
BACKLOG = 16
_UCRED = struct.Struct("iII")  # struct ucred: pid_t pid; uid_t uid; gid_t gid

Handler = Callable[[bytes, Peer], bytes]


class SocketRefused(IronpostError):
    """The socket cannot be made safely: the command line stays off, the controller runs on."""

    title = "Command line off"


class Busy(IronpostError):
    title = "Busy"


def peer_of(conn: socket.socket) -> Peer:
    pid, uid, gid = _UCRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
    return Peer(pid=pid, uid=uid, gid=gid)


def secure_dir(path: Path) -> None:
    """``path`` as a directory of root's (this process's user's) that nobody else may enter: made mode
    0700 if missing, its mode narrowed to 0700 if wider; SocketRefused if it is a link or another's."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise SocketRefused(f"{path} is not a directory ({exc.strerror}): remove it") from None
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid():
            raise SocketRefused(f"{path} belongs to uid {st.st_uid}, not to uid {os.geteuid()}: remove it")
        if stat.S_IMODE(st.st_mode) & 0o077:
            log.info("%s was mode %04o: made 0700 (the command-line socket is root's)", path, stat.S_IMODE(st.st_mode))
            os.fchmod(fd, 0o700)
    finally:
        os.close(fd)


class SocketServer:
    """Serves ``path`` from a thread; ``handle(request_line, peer)`` returns the answer line."""

    def __init__(self, path: Path, handle: Handler) -> None:
        self.path = path
        self._handle = handle
        self._sock: socket.socket | None = None
        self._ino = 0
        self._wake_r, self._wake_w = -1, -1
        self._thread: threading.Thread | None = None
        self._clients: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self._stopping = False

    # --- lifecycle -----------------------------------------------------------------
    def start(self) -> None:
        secure_dir(self.path.parent)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        tmp = self.path.parent / f".{self.path.name}.{secrets.token_hex(8)}"
        try:
            sock.bind(str(tmp))  # a new file: bind never follows or reuses what is at a path
            os.chmod(tmp, 0o600)  # in a directory only we may enter: nobody can have swapped it
            sock.listen(BACKLOG)
            self._replace(tmp)
            self._ino = os.lstat(self.path).st_ino
        except BaseException:
            sock.close()
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        sock.setblocking(False)
        self._sock = sock
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._thread = threading.Thread(target=self._serve, name=f"ironpost-cli {self.path.name}", daemon=True)
        self._thread.start()

    def _replace(self, tmp: Path) -> None:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            st = None
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise SocketRefused(f"{self.path} is a directory: remove it")
        if st is not None and not stat.S_ISSOCK(st.st_mode):
            log.warning("%s was not a socket (mode %06o): replaced it; nothing it pointed to was touched",
                        self.path, st.st_mode)  # fmt: skip
        elif st is not None:
            log.info("%s was left by a controller that ended without removing it: replaced", self.path)
        os.rename(tmp, self.path)  # atomic, and a link at the path is replaced, never followed

    def close(self) -> None:
        """Stop accepting, wait a little for the requests in hand, remove the socket if it is still ours."""
        with self._lock:
            self._stopping = True
        if self._thread is not None:
            os.write(self._wake_w, b"x")
            self._thread.join(5)
            self._thread = None
        with self._lock:
            clients = list(self._clients)
        end = time.monotonic() + 2
        for t in clients:
            t.join(max(0.0, end - time.monotonic()))
        if self._sock is not None:
            try:
                if os.lstat(self.path).st_ino == self._ino:
                    os.unlink(self.path)
            except OSError:
                pass
            self._sock.close()
            self._sock = None
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1

    # --- the accepting thread ------------------------------------------------------------
    def _serve(self) -> None:
        assert self._sock is not None
        poller = select.poll()
        poller.register(self._sock.fileno(), select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        while True:
            ready = {fd for fd, _ in poller.poll()}
            if self._wake_r in ready:
                return
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                continue
            except OSError:
                log.exception("command-line socket: accept failed")
                time.sleep(0.1)  # out of file descriptors: do not spin
                continue
            conn.setblocking(True)
            with self._lock:
                if self._stopping:
                    conn.close()
                    return
                full = len(self._clients) >= MAX_CLIENTS
                if not full:
                    t = threading.Thread(target=self._client, args=(conn,), name="ironpost-cli client", daemon=True)
                    self._clients.add(t)
            if full:
                self._refuse(conn, Busy(f"the controller is serving {MAX_CLIENTS} requests already: try again"))
                continue
            try:
                t.start()
            except RuntimeError as exc:  # no thread to be had (a process or memory limit): this client refused,
                # the socket still served (the exception ended this loop, and the command line with it, for good)
                with self._lock:
                    self._clients.discard(t)
                log.warning("command-line socket: a client refused: %s", exc, extra={"event": "cli_refused"})
                self._refuse(conn, Busy(f"the controller cannot start a thread for the request ({exc}): try again"))

    def _refuse(self, conn: socket.socket, error: IronpostError) -> None:
        try:
            conn.settimeout(0.5)
            conn.sendall(encode_failure(error))
        except OSError:
            pass
        finally:
            conn.close()

    # --- one client, in its own thread ---------------------------------------------------
    def _client(self, conn: socket.socket) -> None:
        try:
            self._one(conn)
        except Exception:
            log.exception("command-line socket: serving a request failed")
        finally:
            conn.close()
            with self._lock:
                self._clients.discard(threading.current_thread())

    def _one(self, conn: socket.socket) -> None:
        peer = peer_of(conn)
        if peer.uid != 0:
            log.warning(
                "command-line socket: refused uid %d (pid %d): only root may change or read the rules",
                peer.uid,
                peer.pid,
                extra={"event": "cli_refused", "uid": peer.uid, "pid": peer.pid},
            )
            self._refuse(conn, NotPermitted(f"refused: uid {peer.uid} is not root; the command line is root's"))
            return
        try:
            line = read_line(conn, REQUEST_SECS, MAX_REQUEST_BYTES)
        except TimeoutError:
            log.warning("command-line socket: pid %d sent no whole request within %.0f s: closed", peer.pid,
                        REQUEST_SECS)  # fmt: skip
            return
        except ValueError as exc:
            self._refuse(conn, BadRequest(str(exc)))
            return
        except OSError:
            return  # the client went away
        if line is None:
            return  # closed without asking anything
        answer = self._handle(line, peer)
        conn.settimeout(ANSWER_SECS)  # the whole answer, not each send (Python >= 3.5)
        try:
            conn.sendall(answer)
        except OSError:
            log.warning("command-line socket: pid %d did not take its answer: closed", peer.pid)


def read_line(conn: socket.socket, seconds: float, limit: int) -> bytes | None:
    """One line (without its newline; or what came before the peer closed its end; None when it
    closed having sent nothing), arriving whole within ``seconds``: TimeoutError when it does not,
    ValueError when it is longer than ``limit``."""
    deadline = time.monotonic() + seconds
    buf = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        conn.settimeout(left)  # the time left for the whole line: a byte at a time gains nothing
        chunk = conn.recv(min(65536, limit + 1 - len(buf)))  # TimeoutError when it runs out
        if not chunk:
            return bytes(buf) if buf else None
        end = chunk.find(b"\n")
        if end >= 0:
            if len(buf) + end > limit:
                raise ValueError(f"the request is longer than {limit} bytes")
            return bytes(buf + chunk[:end])
        buf += chunk
        if len(buf) > limit:
            raise ValueError(f"the request is longer than {limit} bytes")
