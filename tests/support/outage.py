"""A TCP relay to a real service that a test can cut, to see what its clients do in an outage."""

from __future__ import annotations

import socket
import socketserver
import threading
from contextlib import suppress
from typing import Any


class CuttableRelay:
    """Relays 127.0.0.1:<port> to `target` (host, port) until `cut()`: then every open connection is
    closed and new ones are refused, as when the service goes away."""

    def __init__(self, target: tuple[str, int]) -> None:
        relay = self
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

        class Pipe(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                upstream = socket.create_connection(target)
                with relay._lock:
                    relay._open.update((self.request, upstream))
                forward = threading.Thread(target=_pump, args=(self.request, upstream), daemon=True)
                forward.start()
                _pump(upstream, self.request)
                forward.join()

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Pipe)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            for sock in self._open:
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()

    def __enter__(self) -> CuttableRelay:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.cut()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with suppress(OSError):
        sink.shutdown(socket.SHUT_WR)
