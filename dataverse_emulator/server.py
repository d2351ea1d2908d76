"""HTTP plumbing: threaded stdlib HTTP/1.1 listeners with TLS done in each connection's thread.

One emulator listens on several ports, as the real services live on several hosts: the main port (admin
API and organisations served under a path), the identity provider's port (``login.microsoftonline.com``
is a host of its own) and one port per organisation served at the root of its own origin
(``https://<org>.crm.dynamics.com/api/data/v9.2/``). :class:`Listeners` owns them all and accepts on every
one from a single thread, so a thousand organisations cost a thousand sockets, not a thousand threads;
ports are opened and closed while it runs (admin API). Each listener stamps the requests it receives with
its *site* so the application knows which host was called.

The TLS handshake runs in the worker thread (not in ``accept``), so one slow or broken client cannot
stall the others. A handler can ask for the connection to be reset instead of answered
(``Response.drop_connection``): the fault "connection dropped after an import was accepted".
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import socket
import ssl
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

from .wire import Request, Response

if TYPE_CHECKING:
    from .app import Emulator

log = logging.getLogger("dataverse_emulator")
MAX_BODY_BYTES = 512 * 1024 * 1024  # base64 of the largest packages plus headroom


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "dataverse-emulator"
    sys_version = ""
    timeout = 120  # idle keep-alive connections are closed after this
    wbufsize = 64 * 1024  # headers and body leave in one write (handle_one_request flushes)
    server: TLSServer

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _handle(self) -> None:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            body = self._read_chunked()
            length = len(body)
        else:
            length = int(self.headers.get("Content-Length") or 0)
            body = b""
        if length > MAX_BODY_BYTES:
            self._send(Response.json(413, {"error": {"code": "0x80040375", "message": "The request is too large."}}))
            self.close_connection = True
            return
        if length and not body:
            body = self.rfile.read(length)
        path, _, query = self.path.partition("?")
        headers: dict[str, list[str]] = {}
        for name, value in self.headers.items():
            headers.setdefault(name.lower(), []).append(value)
        request = Request(
            method=self.command,
            path=path,
            query_string=query,
            headers=headers,
            body=body,
            client_ip=self.client_address[0],
            site=self.server.site,
        )
        response = self.server.app.dispatch(request)
        if response.drop_connection:
            self.close_connection = True
            self.server.reset_after(self.connection)
            return
        self._send(response)

    def _read_chunked(self) -> bytes:
        """A body sent with ``Transfer-Encoding: chunked`` (RFC 9112 7.1), trailers skipped."""
        chunks: list[bytes] = []
        total = 0
        while True:
            size_line = self.rfile.readline(1024).split(b";", 1)[0].strip()
            size = int(size_line or b"0", 16)
            if size == 0:
                while self.rfile.readline(8192).strip():
                    pass
                return b"".join(chunks)
            total += size
            if total > MAX_BODY_BYTES:
                return b"\0" * (MAX_BODY_BYTES + 1)  # refused by the caller as too large
            chunks.append(self.rfile.read(size))
            self.rfile.readline(8)  # the CRLF after the chunk

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def log_message(self, format: str, *args: object) -> None:
        if os.environ.get("DATAVERSE_EMULATOR_ACCESS_LOG"):
            log.info("%s - %s", self.client_address[0], format % args)


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """The one server context every listener shares (the certificate names 127.0.0.1 and localhost)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert), str(key))
    return context


class TLSServer(ThreadingHTTPServer):
    """One listening port; :class:`Listeners` accepts on it. ``site`` says which host it plays."""

    daemon_threads = True
    block_on_close = False  # closing an org's port must not wait for its idle keep-alive connections
    allow_reuse_address = True

    def __init__(self, app: Emulator, host: str, port: int, context: ssl.SSLContext, site: tuple[str, ...]) -> None:
        self.app = app
        self.context = context
        self.site = site
        super().__init__((host, port), Handler)

    def reset_after(self, connection: socket.socket) -> None:
        """Close this connection with RST once the handler returns (SO_LINGER 0 → the client sees a reset)."""
        with contextlib.suppress(OSError):
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def finish_request(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        request.settimeout(30)
        # Without TCP_NODELAY, small responses on a keep-alive TLS connection wait ~40 ms for delayed ACKs.
        with contextlib.suppress(OSError):
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            request.close()
            return
        try:
            self.RequestHandlerClass(tls, client_address, self)
        except (ConnectionError, ssl.SSLError, TimeoutError, OSError):
            pass
        finally:
            with contextlib.suppress(OSError):
                tls.close()

    def handle_error(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        log.debug("connection error from %s", client_address, exc_info=True)


class Listeners:
    """Every port of one emulator, accepted on by one thread (``serve_forever``).

    ``open`` binds and listens at once (connections wait in the backlog until the loop picks the new
    socket up), so a port is usable as soon as the admin call that created it answers.
    """

    def __init__(self, app: Emulator, host: str, cert: Path, key: Path) -> None:
        self.app = app
        self.host = host
        self.context = tls_context(cert, key)
        self._servers: dict[int, TLSServer] = {}
        self._lock = threading.Lock()
        self._changes: list[tuple[str, TLSServer]] = []
        self._selector = selectors.DefaultSelector()
        self._wake_read, self._wake_write = socket.socketpair()
        self._wake_read.setblocking(False)
        self._stopping = threading.Event()
        self._stopped = threading.Event()

    def open(self, port: int, site: tuple[str, ...]) -> int:
        """Listen on ``port`` (0: a free one the OS picks) for ``site``; returns the port. OSError when taken."""
        server = TLSServer(self.app, self.host, port, self.context, site)
        bound = int(server.server_address[1])
        with self._lock:
            self._servers[bound] = server
            self._changes.append(("add", server))
        self._wake()
        return bound

    def open_preferring(self, port: int | None, site: tuple[str, ...]) -> int:
        """Listen on ``port`` if it is free, else on a port the OS picks (a remembered port someone took)."""
        if port:
            try:
                return self.open(port, site)
            except OSError as exc:
                log.warning("port %s for %s is taken (%s); listening on a new port", port, site, exc)
        return self.open(0, site)

    def close(self, port: int) -> None:
        with self._lock:
            server = self._servers.pop(port, None)
            if server is not None:
                self._changes.append(("remove", server))
        self._wake()

    def ports(self) -> dict[int, tuple[str, ...]]:
        with self._lock:
            return {port: server.site for port, server in self._servers.items()}

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_write.send(b"x")

    def _apply_changes(self) -> None:
        with self._lock:
            changes, self._changes = self._changes, []
        for action, server in changes:
            if action == "add":
                self._selector.register(server.socket, selectors.EVENT_READ, server)
            else:
                with contextlib.suppress(KeyError, ValueError):
                    self._selector.unregister(server.socket)
                server.server_close()

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        self._selector.register(self._wake_read, selectors.EVENT_READ, None)
        try:
            while not self._stopping.is_set():
                self._apply_changes()
                for key, _events in self._selector.select(poll_interval):
                    if key.data is None:
                        with contextlib.suppress(OSError):
                            while self._wake_read.recv(4096):
                                pass
                        continue
                    server: TLSServer = key.data
                    if server.fileno() >= 0:
                        server._handle_request_noblock()
        finally:
            self._apply_changes()
            with self._lock:
                servers = list(self._servers.values())
                self._servers.clear()
            for server in servers:
                server.server_close()
            self._selector.close()
            self._stopped.set()

    def shutdown(self) -> None:
        self._stopping.set()
        self._wake()
        self._stopped.wait(timeout=10)
