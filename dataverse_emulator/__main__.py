"""``python -m dataverse_emulator [--host 127.0.0.1] [--port N] [--idp-port N] [--state FILE] [--seed demo]``.

Prints one line when ready: ``dataverse-emulator listening on https://127.0.0.1:PORT ca=/path/ca.pem``
(``GET /_emulator/health`` tells the other ports). ``--port 0`` picks a free port. The identity provider
and every organisation served at the root of its own origin get ports of their own, picked by the OS
unless given, remembered in the state file and taken again after a restart when still free.
SIGTERM/SIGINT stop it gracefully (state saved).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from .app import ADDRESSING_CHOICES, IDP_SITE, MAIN_SITE, Emulator
from .seed import seed_demo
from .server import Listeners
from .tls import ensure_certificates

DEFAULT_STATE = Path("var") / "dataverse-emulator" / "state.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m dataverse_emulator", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=8443, help="admin API and path-addressed orgs; 0 picks a free port (default 8443)"
    )
    parser.add_argument(
        "--idp-port",
        type=int,
        default=0,
        help="the identity provider's port (default: the one remembered in the state, else one the OS picks)",
    )
    parser.add_argument(
        "--org-addressing",
        choices=ADDRESSING_CHOICES,
        default="origin",
        help="where new orgs live unless the admin API says: 'origin' (own port, default) or 'path' (/<org>)",
    )
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
    app = Emulator(
        state_path,
        host=args.host,
        default_operation_duration=args.operation_duration,
        default_addressing=args.org_addressing,
    )
    app.ca_file = ca_file
    server = Listeners(app, args.host, cert_file, key_file)
    app.listeners = server
    app.port = server.open(args.port, MAIN_SITE)
    with app.store.lock:
        data = app.store.data
        if args.idp_port:
            app.idp_port = server.open(args.idp_port, IDP_SITE)
        else:
            app.idp_port = server.open_preferring(data.get("idp_port"), IDP_SITE)
        data["idp_port"] = app.idp_port
        for name, org in data["orgs"].items():
            if org.get("port"):
                org["port"] = app.reopen_org_port(name, org["port"])
        app.store.save()
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
