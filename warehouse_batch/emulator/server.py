"""The HTTP layer: ``http.server`` plumbing between sockets and :class:`~.app.Emulator`.

HTTP/1.1 with keep-alive (every response has a Content-Length), request
bodies by Content-Length or chunked encoding. A ``multipart/form-data`` body (a file
upload, up to hundreds of MB) is written to a spool file as it arrives instead of being held
in memory, and a response that names a file is sent from it with ``sendfile``. A response marked ``drop``
closes the connection without a byte, which clients see as a connection
error. The server tracks open connections so that :meth:`EmulatorHTTPServer.close_all`
can cut idle keep-alive connections when the emulator stops.
"""
from __future__ import annotations

import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qsl, unquote, urlsplit

from .app import Emulator
from .wire import Request


_CHUNK = 1 << 20


class EmulatorHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server bound to one :class:`Emulator`."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: Emulator) -> None:
        self.app = app
        self._connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        """Accept a connection and remember it."""
        conn, addr = super().get_request()
        with self._conn_lock:
            self._connections.add(conn)
        return conn, addr

    def shutdown_request(self, request: Any) -> None:
        """Forget and close a finished connection."""
        with self._conn_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_all(self) -> None:
        """Cut every open connection (used when stopping)."""
        with self._conn_lock:
            conns = list(self._connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # avoid 40 ms Nagle/delayed-ACK stalls on keep-alive connections
    server_version = "warehouse-batch-emulator"
    sys_version = ""
    server: EmulatorHTTPServer

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self._serve()

    do_POST = do_DELETE = do_PUT = do_PATCH = do_GET

    def _copy_body(self, write: Callable[[bytes], Any]) -> None:
        """Pass the request body (Content-Length or chunked) to ``write``, a chunk at a time."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            while True:
                size_line = self.rfile.readline().split(b";", 1)[0].strip()
                size = int(size_line or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return
                self._copy_exact(write, size)
                self.rfile.readline()
        self._copy_exact(write, int(self.headers.get("Content-Length") or 0))

    def _copy_exact(self, write: Callable[[bytes], Any], size: int) -> None:
        while size > 0:
            chunk = self.rfile.read(min(size, _CHUNK))
            if not chunk:
                return
            write(chunk)
            size -= len(chunk)

    def _read_body(self) -> tuple[bytes, str | None]:
        """Return (body, None), or (b"", spool path) for a multipart upload."""
        if (self.headers.get("Content-Type") or "").lower().startswith("multipart/form-data"):
            handle, path = self.server.app.store.backend.spool_file()
            try:
                with handle:
                    self._copy_body(handle.write)
            except BaseException:
                os.unlink(path)
                raise
            return b"", path
        chunks: list[bytes] = []
        self._copy_body(chunks.append)
        return b"".join(chunks), None

    def _serve(self) -> None:
        app = self.server.app
        body, spool = self._read_body()
        try:
            if app.closed:
                self.close_connection = True
                return
            split = urlsplit(self.path)
            req = Request(
                method=self.command,
                path=unquote(split.path) or "/",
                query=dict(parse_qsl(split.query, keep_blank_values=True)),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
                body_file=spool,
            )
            resp = app.handle(req)
        finally:
            if spool is not None and os.path.exists(spool):
                os.unlink(spool)
        if resp.drop:
            if resp.file is not None:
                resp.file.close()
            self.close_connection = True
            return
        if resp.file is not None:
            self._send_file(resp)
            return
        self.send_response(resp.status)
        for key, value in resp.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(resp.body)))
        self.end_headers()
        self.wfile.write(resp.body)

    def _send_file(self, resp: Any) -> None:
        """Send a response whose body is an open file, then close the file."""
        with resp.file as handle:
            size = os.fstat(handle.fileno()).st_size
            self.send_response(resp.status)
            for key, value in resp.headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            self.wfile.flush()
            if size:
                self.connection.sendfile(handle, 0, size)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature from the base class
        """Stay quiet: the request log is available through the admin API."""
