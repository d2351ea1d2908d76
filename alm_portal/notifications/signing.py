"""The webhook signature: `X-ALM-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.

The timestamp is inside the signed text, so a receiver that rejects old timestamps (say, older than
five minutes) also rejects replays. verify_signature() is what a receiver does; the tests use it.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from django.views.decorators.debug import sensitive_variables

SIGNATURE_HEADER = "X-ALM-Signature"
DEFAULT_TOLERANCE_SECONDS = 300


@sensitive_variables()
def signature_digest(*, secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 over `<timestamp>.<body>` with the endpoint's secret."""
    message = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


@sensitive_variables()
def signature_header(*, secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The X-ALM-Signature value for `body`, signed now (or at `timestamp`)."""
    when = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={when},v1={signature_digest(secret=secret, timestamp=when, body=body)}"


@sensitive_variables()
def verify_signature(
    *, secret: str, header: str, body: bytes, tolerance: int = DEFAULT_TOLERANCE_SECONDS, now: float | None = None
) -> bool:
    """A receiver's check: the header parses, the timestamp is recent and one v1 digest matches."""
    timestamp: int | None = None
    digests: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1" and value:
            digests.append(value)
    if timestamp is None or not digests:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        return False
    expected = signature_digest(secret=secret, timestamp=timestamp, body=body)
    return any(hmac.compare_digest(expected, digest) for digest in digests)
