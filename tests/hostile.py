"""Hostile "Redis" endpoints for failure tests, on loopback ports: a node that accepts and never
answers (a blackholed host, a silent seed), one that dribbles a byte at a time (each read within
the socket timeout), and one that answers RESP with odd but well-formed replies. Real
redis-server processes cannot be made to do these; everything else in the tests uses them."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable


class Silent:
    """Listens with a backlog and never accepts: connects succeed, nothing is ever read."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.sock.close()


class Scripted:
    """Accepts connections and answers each command with `reply(command words)`, raw RESP
    bytes, or dribbles forever when `dribble` is set."""

    def __init__(self, reply: Callable[[list[bytes]], bytes] | None = None,
                 dribble: float = 0.0) -> None:
        self.reply = reply
        self.dribble = dribble
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}"
        self.stopped = threading.Event()
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.closing(conn):
            buffer = b""
            while not self.stopped.is_set():
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buffer += data
                while (command := _parse(buffer)) is not None:
                    words, buffer = command
                    try:
                        if self.dribble:
                            self._drip(conn)
                            return
                        conn.sendall(self.reply(words) if self.reply else b"+OK\r\n")
                    except OSError:
                        return

    def _drip(self, conn: socket.socket) -> None:
        conn.sendall(b"$1000000\r\n")
        while not self.stopped.is_set():
            conn.sendall(b"x")
            time.sleep(self.dribble)

    def close(self) -> None:
        self.stopped.set()
        self.sock.close()


def _parse(buffer: bytes) -> tuple[list[bytes], bytes] | None:
    """One RESP array of bulk strings from the front of `buffer`, or None if incomplete."""
    if not buffer.startswith(b"*") or b"\r\n" not in buffer:
        return None
    head, rest = buffer.split(b"\r\n", 1)
    words = []
    for _ in range(int(head[1:])):
        if b"\r\n" not in rest:
            return None
        size_line, rest = rest.split(b"\r\n", 1)
        size = int(size_line[1:])
        if len(rest) < size + 2:
            return None
        words.append(rest[:size])
        rest = rest[size + 2:]
    return words, rest


def bulk(text: str) -> bytes:
    data = text.encode()
    return b"$%d\r\n%s\r\n" % (len(data), data)
