"""A small TCP proxy that sits between the app and a service (PostgreSQL, Redis) and misbehaves on demand.

    proxy = FaultProxy("127.0.0.1", 5432).start()   # listens on 127.0.0.1:<proxy.port>, passes bytes through
    proxy.refuse()      # the port is closed: new connections are refused, open ones are reset
    proxy.blackhole()   # new connections are accepted and never answered; open ones stop moving
    proxy.drop()        # open connections are reset now; new ones still pass
    proxy.pass_through()
    proxy.stop()

The port stays the same across refuse/pass_through (the listening socket is re-bound with SO_REUSEADDR), so
the app's DATABASE_URL or REDIS_URL never changes: to the app it looks like the service went away and came
back. Plain threads and sockets, no dependencies; good for tests, not for traffic.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
from typing import Literal

Mode = Literal["pass", "refuse", "blackhole"]


def _reset(sock: socket.socket) -> None:
    """Close with RST instead of FIN, as a crashed or restarted server's kernel would."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class FaultProxy:
    def __init__(self, target_host: str, target_port: int, *, listen_host: str = "127.0.0.1", port: int = 0) -> None:
        self.target = (target_host, target_port)
        self.listen_host = listen_host
        self.port = port
        self.mode: Mode = "pass"
        self.connections_accepted = 0
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket | None]] = []
        self._listener: socket.socket | None = None
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------------------------
    def start(self) -> FaultProxy:
        self._listen()
        self._thread = threading.Thread(target=self._accept_loop, name=f"fault-proxy-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._close_listener()
        self.drop()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- faults -------------------------------------------------------------------------------------------
    def pass_through(self) -> None:
        with self._lock:
            self.mode = "pass"
            if self._listener is None:
                self._listen()

    def refuse(self) -> None:
        """Like a stopped server: the port is closed and every open connection is reset."""
        with self._lock:
            self.mode = "refuse"
            self._close_listener()
        self.drop()

    def blackhole(self) -> None:
        """Like a partitioned network: connections open but nothing goes through, in either direction."""
        with self._lock:
            self.mode = "blackhole"
            if self._listener is None:
                self._listen()

    def drop(self) -> None:
        """Reset every open connection (new ones follow the current mode)."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for client, upstream in pairs:
            _reset(client)
            if upstream is not None:
                _reset(upstream)

    # --- plumbing -----------------------------------------------------------------------------------------
    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.listen_host, self.port))
        listener.listen(128)
        listener.settimeout(0.2)
        self.port = listener.getsockname()[1]
        self._listener = listener

    def _close_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            # shutdown() first: it stops the listening at once and wakes an accept() blocked in another thread
            # (close() alone leaves the port accepting until that accept() returns).
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                listener.close()

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            listener = self._listener
            if listener is None:
                self._stopped.wait(0.05)
                continue
            try:
                client, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            self.connections_accepted += 1
            if self.mode == "refuse":
                _reset(client)
                continue
            if self.mode == "blackhole":
                with self._lock:
                    self._pairs.append((client, None))
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        sockets = [client, upstream]
        try:
            while not self._stopped.is_set():
                if self.mode == "blackhole":
                    self._stopped.wait(0.1)
                    continue
                readable, _, _ = select.select(sockets, [], [], 0.2)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (upstream if sock is client else client).sendall(data)
        except (OSError, ValueError):
            return
        finally:
            with self._lock:
                if (client, upstream) in self._pairs:
                    self._pairs.remove((client, upstream))
            for sock in sockets:
                with contextlib.suppress(OSError):
                    sock.close()


__all__ = ["FaultProxy"]
