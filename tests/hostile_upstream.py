"""Upstreams that misbehave on purpose, on loopback: a real listening socket each, speaking as
much (or as little) HTTP as the fault needs. The reference receiver covers well-behaved and
scripted-status answers; these cover what it cannot do by design."""

from __future__ import annotations

import socket
import threading
import time


class HostileUpstream:
    """Accepts connections and answers each with `behaviour(connection, request)` on its own
    thread. `behaviour` may be changed while it runs (a front that turns good)."""

    def __init__(self, behaviour, port: int = 0):
        self.behaviour = behaviour
        self.server = socket.create_server(("127.0.0.1", port))
        self.port = self.server.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/ingest"
        self.requests = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        self.server.settimeout(0.2)
        while not self._stop.is_set():
            try:
                connection, _ = self.server.accept()
            except OSError:
                continue
            self.requests += 1
            threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    def _answer(self, connection):
        try:
            request = read_request(connection)
            self.behaviour(connection, request)
        except OSError:
            pass
        finally:
            connection.close()

    def close(self):
        self._stop.set()
        self._thread.join(timeout=2)
        self.server.close()


def read_request(connection: socket.socket) -> bytes:
    """The message's head and body (by Content-Length): a request, or an answer."""
    connection.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    while len(body) < length:
        chunk = connection.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def answer(status_line: str, headers: dict | None = None, body: bytes = b""):
    def behaviour(connection, request):
        lines = [f"HTTP/1.1 {status_line}", f"Content-Length: {len(body)}", "Connection: close"]
        lines += [f"{key}: {value}" for key, value in (headers or {}).items()]
        connection.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    return behaviour


def huge_body(status_line: str = "500 Internal Server Error", size: int = 400 * 1024 * 1024):
    """An answer that announces and sends `size` bytes for as long as the client reads."""

    def behaviour(connection, request):
        connection.sendall(
            f"HTTP/1.1 {status_line}\r\nContent-Length: {size}\r\n"
            "Content-Type: text/html\r\nConnection: close\r\n\r\n".encode()
        )
        block = b"<p>" + b"x" * 65530 + b"</p>"
        sent = 0
        while sent < size:
            connection.sendall(block)
            sent += len(block)

    return behaviour


def trickle(every_s: float = 0.5, data: bytes = b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 10000):
    """One byte every `every_s`: each read returns in time, the answer never ends."""

    def behaviour(connection, request):
        for byte in data:
            connection.sendall(bytes([byte]))
            time.sleep(every_s)

    return behaviour


def garbage(connection, request):
    connection.sendall(b"\x16\x03\x01\x02\x00 this is not HTTP at all \xff\xfe\r\n\r\n")


def echo(status_line: str = "400 Bad Request"):
    """An error page that quotes the request back, Authorization header and all (some
    gateways do): the token must not reach a log or a dead letter through it."""

    def behaviour(connection, request):
        answer(status_line, {"Content-Type": "text/plain"}, b"bad request: " + request[:2000])(
            connection, request
        )

    return behaviour


def forward_to(port: int):
    """Pass the request to a real server on `port` and its answer back: the front turned good."""

    def behaviour(connection, request):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as upstream:
            upstream.sendall(request)
            connection.sendall(read_request(upstream))

    return behaviour
