"""gunicorn's access log without credentials (gunicorn.conf.py sets it as `logger_class`).

gunicorn writes the request line with its query string, the Referer and, for custom formats, any
header or WSGI variable. A token sent in a URL (refused by the API, but sent all the same) or the
sign-in callback's authorization `code` would stay in that log for as long as it is kept. Every atom
gunicorn offers a format goes through alm_portal.log_redaction first; header atoms that carry
credentials whole (Authorization, Cookie) are masked entirely.
"""

from __future__ import annotations

from typing import Any

from gunicorn.glogging import Logger

from alm_portal.log_redaction import MASK, is_credential_header, redact, redact_query


class RedactingAccessLogger(Logger):  # type: ignore[misc]
    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        for name, value in atoms.items():
            if not isinstance(value, str):
                continue
            inner = name[1:-2] if name.startswith("{") and name[-2:] in ("}i", "}e") else ""
            if inner and is_credential_header(inner):
                atoms[name] = MASK
            elif name in ("q", "{query_string}e"):
                atoms[name] = redact_query(value)
            else:
                atoms[name] = redact(value)
        return atoms
