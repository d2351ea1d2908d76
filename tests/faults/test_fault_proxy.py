"""The TCP fault proxy itself (tests/support/fault_proxy.py), against a local echo server: the fault cases
trust it to pass bytes, refuse, reset and swallow connections as it says."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest

from tests.support.fault_proxy import FaultProxy


@pytest.fixture(name="echo_port")
def echo_port_fixture() -> Iterator[int]:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    stopping = threading.Event()

    def serve(conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:
            while data := conn.recv(4096):
                conn.sendall(data)

    def accept() -> None:
        while not stopping.is_set():
            with contextlib.suppress(OSError):
                conn, _ = server.accept()
                threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield server.getsockname()[1]
    stopping.set()
    server.close()


def echo(port: int, payload: bytes = b"ping", timeout: float = 2.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        return sock.recv(4096)


def test_it_passes_bytes_and_keeps_its_port_across_refuse_and_pass_through(echo_port):
    with FaultProxy("127.0.0.1", echo_port) as proxy:
        port = proxy.port
        assert echo(port) == b"ping"
        proxy.refuse()
        with pytest.raises(ConnectionRefusedError):
            echo(port)
        proxy.pass_through()
        assert proxy.port == port
        assert echo(port, b"back") == b"back"


def test_drop_resets_open_connections_and_blackhole_answers_nothing(echo_port):
    with FaultProxy("127.0.0.1", echo_port) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=2) as open_conn:
            open_conn.sendall(b"one")
            assert open_conn.recv(16) == b"one"
            proxy.drop()
            with pytest.raises((ConnectionResetError, BrokenPipeError, OSError)):
                open_conn.sendall(b"two")
                if not open_conn.recv(16):
                    raise ConnectionResetError("closed")
        proxy.blackhole()
        with pytest.raises(TimeoutError):
            echo(proxy.port, timeout=0.5)
        proxy.pass_through()
        assert echo(proxy.port) == b"ping"
