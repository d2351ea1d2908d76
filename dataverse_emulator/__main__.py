"""``python -m dataverse_emulator [--host 127.0.0.1] [--port N] [--state FILE] [--seed demo]``.

Prints one line when ready: ``dataverse-emulator listening on https://127.0.0.1:PORT ca=/path/ca.pem``.
``--port 0`` picks a free port. SIGTERM/SIGINT stop it gracefully (state saved).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from .app import Emulator
from .seed import seed_demo
from .server import TLSServer
from .tls import ensure_certificates

DEFAULT_STATE = Path("var") / "dataverse-emulator" / "state.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m dataverse_emulator", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8443, help="port to bind; 0 picks a free one (default 8443)")
    parser.add_argument("--state", type=Path, default=DEFAULT_STATE, help=f"state file (default {DEFAULT_STATE})")
    parser.add_argument("--seed", choices=["demo"], help="lay out the demo tenant, orgs and identities (idempotent)")
    parser.add_argument(
        "--operation-duration",
        type=float,
        default=3.0,
        help="seconds an async solution operation takes in new orgs (default 3; tests use ~0.5)",
    )
    parser.add_argument(
        "--sso-redirect-uri",
        action="append",
        default=None,
        help="redirect URI of the demo SSO client (repeatable; with --seed demo)",
    )
    parser.add_argument("--verbose", action="store_true", help="log to stderr")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr)
    state_path = args.state.resolve()
    state_path.parent.mkdir(parents=True, exist_ok=True)
    ca_file, cert_file, key_file = ensure_certificates(state_path.parent)
    app = Emulator(state_path, host=args.host, default_operation_duration=args.operation_duration)
    app.ca_file = ca_file
    server = TLSServer(app, args.host, args.port, cert_file, key_file)
    app.port = server.server_address[1]
    if args.seed == "demo":
        seed_demo(app, args.sso_redirect_uri)
    app.solutions.start()

    stopping = threading.Event()

    def stop(signum: int, _frame: object) -> None:
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"dataverse-emulator listening on {app.base_url} ca={ca_file}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        app.solutions.stop()
        with app.store.lock:
            app.store.flush()
            app.store.save(orgs=[])
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
