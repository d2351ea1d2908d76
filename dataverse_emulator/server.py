"""HTTP plumbing: a threaded stdlib HTTP/1.1 server with TLS done in each connection's thread.

The TLS handshake runs in the worker thread (not in ``accept``), so one slow or broken client cannot
stall the others. A handler can ask for the connection to be reset instead of answered
(``Response.drop_connection``): the fault "connection dropped after an import was accepted".
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import ssl
import struct
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
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._send(Response.json(413, {"error": {"code": "0x80040375", "message": "The request is too large."}}))
            self.close_connection = True
            return
        body = self.rfile.read(length) if length else b""
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
        )
        response = self.server.app.dispatch(request)
        if response.drop_connection:
            self.close_connection = True
            self.server.reset_after(self.connection)
            return
        self._send(response)

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


class TLSServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, app: Emulator, host: str, port: int, cert: Path, key: Path) -> None:
        self.app = app
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.context.load_cert_chain(str(cert), str(key))
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
