"""A small Git host over HTTPS: ``git http-backend`` behind HTTP basic authentication.

It plays GitHub or Azure DevOps for tests and the demo: bare repositories under one root directory are
served at ``https://127.0.0.1:PORT/<name>.git`` to anyone presenting the one configured username and token.
Everything Git-specific is done by git itself: this module is a WSGI application that runs
``git http-backend`` as a CGI program, as its documentation describes
(https://git-scm.com/docs/git-http-backend):

* ``GIT_PROJECT_ROOT`` is the root, ``GIT_HTTP_EXPORT_ALL`` serves every repository in it;
* ``REMOTE_USER`` is set once the credentials check out, which is what enables ``git-receive-pack``
  (pushes) by default;
* the ``Git-Protocol`` header is passed on as ``GIT_PROTOCOL`` so clients can speak protocol version 2;
* request bodies are streamed to the CGI's standard input as they arrive. A body sent with
  ``Transfer-Encoding: chunked`` (git does that for pushes above ``http.postBuffer``) is de-chunked here
  and ``CONTENT_LENGTH`` is left unset, so http-backend reads until end of input; ``Content-Encoding: gzip``
  is passed through as ``HTTP_CONTENT_ENCODING`` and http-backend inflates it itself.

The TLS certificate is the emulator's own (:func:`dataverse_emulator.tls.ensure_certificates`), so clients
trust the same ``ca.pem``. Run it in-process (:class:`GitHost`, threaded, port 0 picks a free one) or as
``python -m dataverse_emulator.git_host --root DIR --port P --cert-dir DIR --username U --token T``
(``--create NAME`` makes a bare repository first; ``--token`` may instead come from ``GIT_HOST_TOKEN``).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hmac
import logging
import os
import re
import shutil
import signal
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from .tls import ensure_certificates

log = logging.getLogger("dataverse_emulator.git_host")

HTTP_BACKEND = "/usr/lib/git-core/git-http-backend"
GIT = shutil.which("git") or "/usr/bin/git"
COPY_BUFFER = 64 * 1024
_REPOSITORY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")

StartResponse = Callable[..., Any]


def create_repository(root: Path, name: str, *, initial_branch: str = "main") -> Path:
    """Create (if missing) the bare repository ``<root>/<name>.git`` and return its path."""
    name = name.removesuffix(".git")
    if not _REPOSITORY_NAME.match(name) or name.endswith("."):
        raise ValueError(f"invalid repository name {name!r}")
    path = Path(root) / f"{name}.git"
    if not (path / "HEAD").exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(  # noqa: S603 - fixed executable and arguments
            [GIT, "init", "--bare", "--quiet", f"--initial-branch={initial_branch}", str(path)],
            check=True,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(path.parent)},
            timeout=60,
        )
    return path


# --- request bodies ------------------------------------------------------------------------------------
def _read_chunked(stream: IO[bytes]) -> Iterator[bytes]:
    """The pieces of a ``Transfer-Encoding: chunked`` body, at most COPY_BUFFER bytes at a time."""
    while True:
        size_line = stream.readline(1024)
        if not size_line:
            raise ConnectionError("the client closed the connection inside a chunked body")
        size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while stream.readline(1024).strip():  # trailer headers, then the final empty line
                pass
            return
        remaining = size
        while remaining:
            piece = stream.read(min(remaining, COPY_BUFFER))
            if not piece:
                raise ConnectionError("the client closed the connection inside a chunk")
            remaining -= len(piece)
            yield piece
        stream.readline(1024)  # the CRLF after each chunk


def _read_fixed(stream: IO[bytes], length: int) -> Iterator[bytes]:
    remaining = length
    while remaining:
        piece = stream.read(min(remaining, COPY_BUFFER))
        if not piece:
            raise ConnectionError("the client closed the connection before the end of the body")
        remaining -= len(piece)
        yield piece


# --- the WSGI application ------------------------------------------------------------------------------
class GitHttpApp:
    """WSGI application: basic authentication, then ``git http-backend`` as a CGI with streamed bodies."""

    def __init__(self, root: Path, *, username: str, token: str, realm: str = "Git test host") -> None:
        if not username or not token:
            raise ValueError("the Git host needs a username and a token")
        self.root = Path(root).resolve()
        self.username = username
        self.realm = realm
        self._expected = base64.b64encode(f"{username}:{token}".encode()).decode("ascii")

    def _authenticated(self, environ: dict[str, Any]) -> bool:
        scheme, _, credentials = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        return scheme.lower() == "basic" and hmac.compare_digest(credentials.strip().encode(), self._expected.encode())

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if not self._authenticated(environ):
            body = b"Authentication required\n"
            start_response(
                "401 Unauthorized",
                [
                    ("WWW-Authenticate", f'Basic realm="{self.realm}"'),
                    ("Content-Type", "text/plain"),
                    ("Content-Length", str(len(body))),
                ],
            )
            return [body]
        return self._run_backend(environ, start_response)

    def _cgi_environment(self, environ: dict[str, Any], chunked: bool) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.root),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null",
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": environ.get("SERVER_PROTOCOL", "HTTP/1.1"),
            "REQUEST_METHOD": environ.get("REQUEST_METHOD", "GET"),
            "PATH_INFO": environ.get("PATH_INFO", "/"),
            "QUERY_STRING": environ.get("QUERY_STRING", ""),
            "CONTENT_TYPE": environ.get("CONTENT_TYPE", ""),
            "REMOTE_USER": self.username,
            "REMOTE_ADDR": environ.get("REMOTE_ADDR", "127.0.0.1"),
        }
        if environ.get("CONTENT_LENGTH") and not chunked:
            env["CONTENT_LENGTH"] = environ["CONTENT_LENGTH"]
        for header, variable in (
            ("HTTP_CONTENT_ENCODING", "HTTP_CONTENT_ENCODING"),
            ("HTTP_GIT_PROTOCOL", "GIT_PROTOCOL"),
        ):
            if environ.get(header):
                env[variable] = environ[header]
        return env

    def _run_backend(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        stream: IO[bytes] = environ["wsgi.input"]
        if chunked:
            body: Iterator[bytes] | None = _read_chunked(stream)
        elif int(environ.get("CONTENT_LENGTH") or 0) > 0:
            body = _read_fixed(stream, int(environ["CONTENT_LENGTH"]))
        else:
            body = None
        process = subprocess.Popen(  # noqa: S603 - fixed executable, environment built above
            [HTTP_BACKEND],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self._cgi_environment(environ, chunked),
            cwd=self.root,
        )
        assert process.stdin is not None and process.stdout is not None and process.stderr is not None
        # The body is fed from its own thread while we read the answer: a CGI may start answering (or fail)
        # before it has read everything, and neither side may wait on a full pipe.
        feeder = threading.Thread(target=_feed, args=(body, process.stdin), daemon=True)
        feeder.start()
        threading.Thread(target=_log_stderr, args=(process.stderr,), daemon=True).start()
        status, headers = _read_cgi_headers(process.stdout)
        start_response(status, headers)
        return _response_body(process, feeder)


def _feed(body: Iterator[bytes] | None, stdin: IO[bytes]) -> None:
    try:
        for piece in body or ():
            stdin.write(piece)
    except (BrokenPipeError, ConnectionError, ValueError, OSError) as exc:
        log.debug("request body not fully delivered to git http-backend: %s", exc)
    finally:
        with contextlib.suppress(OSError):
            stdin.close()


def _log_stderr(stderr: IO[bytes]) -> None:
    for line in stderr:
        log.info("git http-backend: %s", line.decode("utf-8", "replace").rstrip())


def _read_cgi_headers(stdout: IO[bytes]) -> tuple[str, list[tuple[str, str]]]:
    status = "200 OK"
    headers: list[tuple[str, str]] = []
    while True:
        line = stdout.readline(64 * 1024)
        if not line:
            return "502 Bad Gateway", [("Content-Type", "text/plain")]
        text = line.decode("latin-1").rstrip("\r\n")
        if not text:
            return status, headers
        name, _, value = text.partition(":")
        if name.lower() == "status":
            status = value.strip()
        else:
            headers.append((name.strip(), value.strip()))


def _response_body(process: subprocess.Popen[bytes], feeder: threading.Thread) -> Iterator[bytes]:
    assert process.stdout is not None
    try:
        while piece := process.stdout.read1(COPY_BUFFER):  # type: ignore[attr-defined]
            yield piece
    finally:
        process.stdout.close()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        feeder.join(timeout=5)


# --- the HTTPS server ----------------------------------------------------------------------------------
class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("git host %s " + format, self.address_string(), *args)


class _ThreadedTLSServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], context: ssl.SSLContext) -> None:
        self.ssl_context = context
        super().__init__(address, _QuietHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind asks DNS for our fully qualified name; a loopback host needs no lookup.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)
        self.setup_environ()

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, address = self.socket.accept()
        connection.settimeout(120)
        # The handshake happens in the request's own thread, so a silent client cannot stall accept().
        return self.ssl_context.wrap_socket(connection, server_side=True, do_handshake_on_connect=False), address

    def shutdown_request(self, request: Any) -> None:
        # The end of a response without Content-Length is the end of the connection; TLS clients (GnuTLS in
        # git's curl) accept that only after a close_notify, which a plain socket shutdown never sends.
        with contextlib.suppress(OSError, ValueError):
            request.settimeout(5)
            request.unwrap()
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("git host: connection from %s failed", client_address, exc_info=True)


class GitHost:
    """An in-process HTTPS Git host on a loopback port; ``start()``/``stop()`` or use as a context manager."""

    def __init__(
        self,
        root: Path,
        *,
        username: str,
        token: str,
        cert_dir: Path,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.username = username
        self.token = token
        ca, cert, key = ensure_certificates(Path(cert_dir))
        self.ca_bundle = ca
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(cert), str(key))
        self._server = _ThreadedTLSServer((host, port), context)
        self._server.set_app(GitHttpApp(self.root, username=username, token=token))
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"https://{self._server.server_name}:{self.port}"

    def url_for(self, name: str) -> str:
        return f"{self.base_url}/{name.removesuffix('.git')}.git"

    def create_repository(self, name: str) -> str:
        """Create the bare repository ``name`` and return its https URL."""
        create_repository(self.root, name)
        return self.url_for(name)

    def start(self) -> GitHost:
        self._thread = threading.Thread(target=self._server.serve_forever, name="git-host", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> GitHost:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dataverse_emulator.git_host", description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="directory holding the bare repositories")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument("--cert-dir", type=Path, required=True, help="where the emulator's ca.pem and server.pem live")
    parser.add_argument("--username", required=True)
    parser.add_argument("--token", default=os.environ.get("GIT_HOST_TOKEN", ""), help="or GIT_HOST_TOKEN")
    parser.add_argument("--create", action="append", default=[], metavar="NAME", help="create a bare repository")
    parser.add_argument("--create-only", action="store_true", help="create the repositories and exit")
    parser.add_argument("--verbose", action="store_true", help="log requests to stderr")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, stream=sys.stderr)
    for name in args.create:
        create_repository(args.root, name)
    if args.create_only:
        return 0
    if not args.token:
        parser.error("--token (or GIT_HOST_TOKEN) is required")
    host = GitHost(
        args.root, username=args.username, token=args.token, cert_dir=args.cert_dir, host=args.host, port=args.port
    )
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=host._server.shutdown).start())
    print(f"git-host listening on {host.base_url} ca={host.ca_bundle}", flush=True)
    try:
        host.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        host._server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
