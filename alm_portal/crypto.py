"""Encryption at rest for stored secrets (environment credentials, webhook HMAC secrets), and the
checks of certificate and private-key PEMs. Shared by several apps, so it sits below all of them.

MultiFernet over settings.ALM_ENCRYPTION_KEYS (newest first): it encrypts with the first key and
decrypts with any, so a key is rotated by putting a new key in front, running
`manage.py rotate_encryption_key` (environments.services.credentials_reencrypt) and then dropping
the old key. Plain text leaves this module only to build a Dataverse client (environments/clients.py)
and to sign a webhook (notifications).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from functools import lru_cache

from cryptography import x509
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import serialization
from django.conf import settings
from django.views.decorators.debug import sensitive_variables

from alm_portal.errors import ValidationFailed


class SecretUnreadable(Exception):
    """A stored secret cannot be decrypted with any configured key (a key was dropped too early)."""


@lru_cache(maxsize=4)
def _fernet_for(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key.strip().encode()) for key in keys])


def _fernet() -> MultiFernet:
    return _fernet_for(tuple(settings.ALM_ENCRYPTION_KEYS))


@sensitive_variables()
def encrypt_secret(plaintext: str) -> str:
    """The Fernet token (ASCII) of `plaintext`, with the newest key."""
    return _fernet().encrypt(plaintext.encode("utf-8")).decode("ascii")


@sensitive_variables()
def decrypt_secret(ciphertext: str) -> str:
    try:
        return _fernet().decrypt(ciphertext.encode("ascii")).decode("utf-8")
    except (InvalidToken, ValueError):
        raise SecretUnreadable("a stored credential cannot be decrypted with the configured keys") from None


def rotate_ciphertext(ciphertext: str) -> str:
    """The same secret encrypted with the newest key; the unchanged text when the newest key already
    reads it (so a second run changes nothing). Raises SecretUnreadable when no key decrypts it."""
    token = ciphertext.encode("ascii")
    newest = Fernet(settings.ALM_ENCRYPTION_KEYS[0].strip().encode())
    try:
        newest.decrypt(token)
        return ciphertext
    except InvalidToken:
        pass
    try:
        return _fernet().rotate(token).decode("ascii")
    except (InvalidToken, ValueError):
        raise SecretUnreadable("a stored credential cannot be decrypted with the configured keys") from None


# --- certificates ---------------------------------------------------------------------------------------


def certificate_facts(certificate_pem: str) -> tuple[str, datetime]:
    """(SHA-256 thumbprint hex, not-valid-after in UTC) of a PEM certificate; ValidationFailed if unreadable."""
    try:
        certificate = x509.load_pem_x509_certificate(certificate_pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise ValidationFailed(
            "The certificate is not a PEM X.509 certificate.",
            details={"certificate_pem": ["Not a PEM X.509 certificate."]},
        ) from None
    der = certificate.public_bytes(serialization.Encoding.DER)
    expires = certificate.not_valid_after_utc.astimezone(UTC)
    return hashlib.sha256(der).hexdigest(), expires


@sensitive_variables()
def check_private_key(private_key_pem: str) -> None:
    """Refuse a private key PEM that does not load (unencrypted PEM keys only)."""
    try:
        serialization.load_pem_private_key(private_key_pem.encode("ascii"), password=None)
    except (ValueError, TypeError, UnicodeEncodeError):
        raise ValidationFailed(
            "The private key is not an unencrypted PEM private key.",
            details={"private_key_pem": ["Not an unencrypted PEM private key."]},
        ) from None
