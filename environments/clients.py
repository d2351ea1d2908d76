"""Building a Dataverse client for an environment: the one place credentials are decrypted.

Every client built here passed the outbound-URL policy twice: the environment URL and authority
are re-checked from their text (a setting such as ALM_ALLOW_LOOPBACK may have changed since they
were saved), and the client's connections go through the pinned adapter, which refuses private
addresses at connect time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from alm_portal import outbound
from alm_portal.crypto import decrypt_secret
from alm_portal.dataverse.auth import ClientCertificate, ClientCredentials
from alm_portal.dataverse.client import DataverseClient, RetryPolicy, Timeouts, restore_throttle_not_before
from environments.choices import CredentialKind
from environments.models import Credential, Environment
from environments.throttling import environment_count_throttled_response

logger = logging.getLogger(__name__)

# Health checks are short and must not sleep through throttling: a 429 becomes `degraded` with a
# persisted "not before" time instead.
HEALTH_RETRY = RetryPolicy(max_attempts=2, base_delay=0.5, max_delay=2.0, max_retry_after=0.0)
HEALTH_TIMEOUTS = Timeouts(connect=5.0, read=30.0, transfer_read=30.0)
# A sync may wait out a short Retry-After itself; a longer one defers the job.
SYNC_RETRY = RetryPolicy(max_attempts=3, base_delay=1.0, max_delay=10.0, max_retry_after=10.0)
SYNC_TIMEOUTS = Timeouts(connect=5.0, read=120.0, transfer_read=120.0)


def ca_bundle() -> str | None:
    """The CA bundle Dataverse and authority certificates are verified against (None: certifi's)."""
    return settings.ALM_DATAVERSE_CA_BUNDLE


@dataclass(frozen=True)
class SecretMaterial:
    """The plain-text material of one credential, kept only for redacting error texts."""

    values: tuple[str, ...] = field(repr=False)

    def redact(self, text: str) -> str:
        for value in self.values:
            if value and len(value) >= 4:
                text = text.replace(value, "[redacted]")
        return text


@sensitive_variables()
def client_credentials(environment: Environment, credential: Credential) -> tuple[ClientCredentials, SecretMaterial]:
    """Decrypt `credential` into the client library's credential type (never logged, never stored)."""
    authority = outbound.check_url(environment.authority, purpose=outbound.Purpose.AUTHORITY).url
    plain = decrypt_secret(credential.secret_ciphertext)
    if credential.kind == CredentialKind.CERTIFICATE:
        certificate = ClientCertificate(private_key_pem=plain, certificate_pem=credential.certificate_pem)
        creds = ClientCredentials(authority=authority, client_id=credential.client_id, certificate=certificate)
    else:
        creds = ClientCredentials(authority=authority, client_id=credential.client_id, client_secret=plain)
    return creds, SecretMaterial(values=(plain,))


@sensitive_variables()
def client_for(
    environment: Environment,
    credential: Credential,
    *,
    retry_policy: RetryPolicy = HEALTH_RETRY,
    timeouts: Timeouts = HEALTH_TIMEOUTS,
    sleep: Callable[[float], None] | None = None,
) -> tuple[DataverseClient, SecretMaterial]:
    """A client for `environment` authenticated with `credential`, its connections pinned."""
    url = outbound.check_url(environment.url, purpose=outbound.Purpose.DATAVERSE).url
    creds, material = client_credentials(environment, credential)
    kwargs = {"sleep": sleep} if sleep is not None else {}
    client = DataverseClient(
        url,
        credentials=creds,
        ca_bundle=ca_bundle(),
        timeouts=timeouts,
        retry_policy=retry_policy,
        on_throttled=_throttle_counter(environment.pk),
        **kwargs,  # type: ignore[arg-type]
    )
    # The client has no public hook for its transport yet (reported to its owner); its session is a
    # plain requests.Session, so the pinned adapter is mounted on it here.
    outbound.pin_session(client._session)
    _restore_throttle(environment, url)
    return client, material


def _throttle_counter(environment_id: int) -> Callable[[float | None], None]:
    def count(retry_after: float | None) -> None:
        environment_count_throttled_response(environment_id=environment_id, retry_after=retry_after)

    return count


def _restore_throttle(environment: Environment, url: str) -> None:
    until: datetime | None = environment.throttled_until
    if until is not None and until > timezone.now():
        restore_throttle_not_before(url, until)
