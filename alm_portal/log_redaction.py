"""Credentials never reach a log: query parameters that carry them and API token text are masked.

URLs end up in access logs (gunicorn's, a proxy's) and in log messages. Tokens do not belong in URLs
(the API refuses them there and revokes such a token), but a client may still send one, and the
sign-in callback legitimately carries an authorization `code`. So every log line we write masks:

- the value of a query parameter whose name carries a credential (`access_token`, `token`, `code`,
  `id_token`, `client_secret`, `password`, `api_key`, ... and any name ending in `token`, `secret`,
  `password` or `_key`), wherever a URL appears in the line;
- any API token text (`alm_<id>_<secret>`), wherever it appears.

Used by our log formatters (alm_portal.logformat) and by gunicorn's access log
(alm_portal.gunicorn_logging, configured in gunicorn.conf.py). Standard library only: gunicorn loads it
before Django is set up.
"""

from __future__ import annotations

import re

MASK = "[redacted]"
SENSITIVE_QUERY_PARAMETERS = frozenset(
    {
        "access_token",
        "token",
        "code",
        "id_token",
        "refresh_token",
        "client_secret",
        "client_assertion",
        "assertion",
        "password",
        "secret",
        "api_key",
        "apikey",
        "key",
        "bearer",
        "auth",
        "authorization",
        "sig",
        "signature",
    }
)
_SENSITIVE_SUFFIXES = ("token", "secret", "password", "_key")
# A query parameter inside a URL or a bare query string: its name, then its value up to the next
# separator or the end of the URL.
_PARAMETER = re.compile(r"(?P<lead>[?&;])(?P<name>[A-Za-z0-9_.\-\[\]%]+)=(?P<value>[^&;#\s\"'<>]*)")
# The text of an API token (accounts.services builds it): anywhere, whatever surrounds it.
TOKEN_TEXT_PATTERN = re.compile(r"alm_[1-9][0-9]{0,18}_[A-Za-z0-9_-]{43}")
# Header and environment atoms of an access log line that carry credentials whole.
_CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key"})


def is_sensitive_parameter(name: str) -> bool:
    lowered = name.lower()
    return lowered in SENSITIVE_QUERY_PARAMETERS or lowered.endswith(_SENSITIVE_SUFFIXES)


def _mask_parameter(match: re.Match[str]) -> str:
    if not is_sensitive_parameter(match["name"]) or not match["value"]:
        return match[0]
    return f"{match['lead']}{match['name']}={MASK}"


def redact_query(query: str) -> str:
    """A bare query string (`a=1&access_token=...`) with its credential parameters masked."""
    return redact("?" + query)[1:] if query else query


def redact(text: str) -> str:
    """`text` with the credential parameters of the URLs in it and any token text masked (a URL, a
    request line, a log message)."""
    if not text:
        return text
    if "=" in text:
        text = _PARAMETER.sub(_mask_parameter, text)
    if "alm_" in text:
        text = TOKEN_TEXT_PATTERN.sub(f"alm_{MASK}", text)
    return text


def is_credential_header(name: str) -> bool:
    """Whether a request header (as gunicorn names its atoms, or a WSGI environ key) carries a credential."""
    lowered = name.lower().removeprefix("http_").replace("_", "-")
    return lowered in _CREDENTIAL_HEADERS
