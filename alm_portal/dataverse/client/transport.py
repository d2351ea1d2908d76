"""The client's transport: one HTTP session, bearer tokens, throttle gating, error mapping and retries."""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Self
from urllib.parse import urlsplit

import requests
import urllib3.exceptions

from alm_portal.dataverse import unconfirmed
from alm_portal.dataverse.auth import ClientCredentials, MsalTokenProvider, TokenProvider, VerifiedSession
from alm_portal.dataverse.client.results import _str
from alm_portal.dataverse.client.streaming import Base64JsonBody
from alm_portal.dataverse.client.throttle import (
    _environment_key,
    _extend_not_before,
    _remaining_throttle,
    parse_retry_after,
)
from alm_portal.dataverse.errors import (
    ConnectionFailed,
    DataverseError,
    EnvironmentBusy,
    InvalidResponse,
    RequestTimeout,
    SubmissionOutcomeUnknown,
    Throttled,
    TlsError,
    TransientError,
    UnexpectedRedirect,
    error_from_dataverse,
    network_reason,
)

# Every part of the client logs under the one name the client has always used.
logger = logging.getLogger("alm_portal.dataverse.client")

API_PATH = "/api/data/v9.2/"


# --- configuration ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timeouts:
    """Connect and read timeouts in seconds; ``transfer_read`` for package upload/download calls."""

    connect: float = 10.0
    read: float = 120.0
    transfer_read: float = 900.0


@dataclass(frozen=True)
class RetryPolicy:
    """How idempotent calls are retried: capped exponential backoff with jitter.

    ``max_attempts`` counts every send of one call. ``max_retry_after`` is the longest wait (a Retry-After or
    a remaining "not before") the client sleeps through itself; a longer one raises :class:`Throttled` with
    ``retry_after`` so the caller can persist it. ``max_retry_after=0`` never sleeps for throttling.
    """

    max_attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 60.0
    max_retry_after: float = 60.0
    jitter: bool = True

    def backoff(self, retry_number: int, rng: random.Random | None = None) -> float:
        """Delay before retry ``retry_number`` (1-based): base·2^(n-1) capped at max_delay, "equal jitter"."""
        delay = min(self.max_delay, self.base_delay * (2 ** max(0, retry_number - 1)))
        if self.jitter:
            delay = delay / 2 + (rng or random).uniform(0, delay / 2)
        return delay


# --- the transport --------------------------------------------------------------------------------------------------


class DataverseTransport:
    """One environment's HTTP session and how a call is sent; :class:`DataverseClient` adds the operations.

    The constructor's arguments are described on :class:`~alm_portal.dataverse.client.DataverseClient`.
    """

    def __init__(
        self,
        environment_url: str,
        *,
        token_provider: TokenProvider | None = None,
        credentials: ClientCredentials | None = None,
        ca_bundle: str | None = None,
        timeouts: Timeouts | None = None,
        retry_policy: RetryPolicy | None = None,
        import_job_id_mode: bool = unconfirmed.IMPORT_JOB_ID_ON_ASYNC_ACTIONS_DEFAULT,
        proxies: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        page_size: int = 500,
        user_agent: str = "alm-portal-dataverse/1",
        on_throttled: Callable[[float | None], None] | None = None,
    ) -> None:
        parts = urlsplit(environment_url)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError("environment_url must be an https URL")
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ValueError("environment_url must not carry credentials, a query or a fragment")
        if (token_provider is None) == (credentials is None):
            raise ValueError("give exactly one of token_provider and credentials")
        self.environment_url = environment_url.rstrip("/")
        self._key = _environment_key(self.environment_url)
        self.api_url = self.environment_url + API_PATH
        self.scope = f"{self.environment_url}/.default"
        self.timeouts = timeouts or Timeouts()
        self.retry_policy = retry_policy or RetryPolicy()
        self.import_job_id_mode = import_job_id_mode
        if not 1 <= page_size <= 5000:
            raise ValueError("page_size must be between 1 and 5000 (Dataverse's maximum page size)")
        self.page_size = page_size
        self._sleep = sleep
        self._on_throttled = on_throttled
        self._rng = random.Random()  # noqa: S311 - jitter, not cryptography
        self._session = VerifiedSession(
            ca_bundle=ca_bundle,
            proxies=proxies,
            timeout=(self.timeouts.connect, self.timeouts.read),
            user_agent=user_agent,
        )
        if credentials is not None:
            token_provider = MsalTokenProvider(credentials, ca_bundle=ca_bundle, proxies=proxies)
        assert token_provider is not None
        self.token_provider: TokenProvider = token_provider

    # -- lifecycle --

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DataverseClient({self.environment_url!r})"

    # -- transport --

    def _url(self, resource: str) -> str:
        return resource if resource.startswith("https://") else self.api_url + resource.lstrip("/")

    def _check_same_origin(self, url: str) -> None:
        """``@odata.nextLink`` and the like must stay on this environment's API (the token goes with them)."""
        if _environment_key(url.split("?", 1)[0]).startswith(_environment_key(self.api_url)):
            return
        raise InvalidResponse(f"refusing to follow a link outside {self.api_url}: {url}")

    def _headers(self, token: str, extra: Mapping[str, str] | None, has_body: bool) -> dict[str, str]:
        headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/json",
            "OData-MaxVersion": "4.0",
            "OData-Version": "4.0",
            "If-None-Match": "null",
        }
        if has_body:
            headers["Content-Type"] = "application/json; charset=utf-8"
        if extra:
            headers.update(extra)
        return headers

    def _wait_for_throttle(self) -> None:
        """Never send to an environment inside its Retry-After window (docs/dataverse.md §1.5)."""
        remaining = _remaining_throttle(self._key)
        if remaining <= 0:
            return
        if remaining > self.retry_policy.max_retry_after:
            raise Throttled(
                f"{self.environment_url} is throttled for another {remaining:.1f}s",
                http_status=None,
                environment_url=self.environment_url,
                retry_after=remaining,
            )
        logger.info("waiting %.1fs before calling throttled %s", remaining, self.environment_url)
        self._sleep(remaining)
        # Another caller may have extended the window while we slept.
        self._wait_for_throttle()

    def _error_from_response(self, response: requests.Response) -> DataverseError:
        status = response.status_code
        code: object = None
        message = ""
        details: dict[str, Any] = {}
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if isinstance(payload, Mapping) and isinstance(payload.get("error"), Mapping):
            error = payload["error"]
            code = error.get("code")
            message = _str(error.get("message"))
            details = {key: value for key, value in error.items() if key not in ("code", "message")}
        elif isinstance(payload, Mapping) and "error" in payload:
            message = _str(payload.get("error_description") or payload.get("error"))
        if not message:
            message = (response.text or "")[:500] or f"HTTP {status}"
        request_id = (
            response.headers.get("x-ms-service-request-id")
            or response.headers.get("REQ_ID")
            or response.headers.get("x-ms-request-id")
        )
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if 300 <= status < 400:
            return UnexpectedRedirect(
                f"unexpected redirect (HTTP {status}); redirects are never followed",
                location=response.headers.get("Location"),
                http_status=status,
                environment_url=self.environment_url,
                request_id=request_id,
            )
        error = error_from_dataverse(
            http_status=status,
            code=code,
            message=message,
            environment_url=self.environment_url,
            request_id=request_id,
            retry_after=retry_after,
            details=details,
        )
        if isinstance(error, Throttled) and error.retry_after is None:
            # A service-protection 429 without Retry-After still means "back off" (docs/dataverse.md §1.5). A busy
            # environment (CustomizationLock, also 429) without the header does not block other calls.
            error.retry_after = unconfirmed.DEFAULT_RETRY_AFTER_SECONDS
        return error

    def _send(
        self,
        method: str,
        resource: str,
        *,
        json_body: Any = None,
        body_factory: Callable[[], Base64JsonBody] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool,
        stream: bool = False,
        read_timeout: float | None = None,
    ) -> requests.Response:
        """Send one call with throttle gating, 401 refresh, and retries for idempotent calls."""
        url = self._url(resource)
        policy = self.retry_policy
        attempt = 0
        refreshed = False
        while True:
            attempt += 1
            self._wait_for_throttle()
            token = self.token_provider.get_token(self.scope)
            data: Any = None
            if body_factory is not None:
                data = body_factory()
            elif json_body is not None:
                data = json.dumps(json_body, separators=(",", ":")).encode("utf-8")
            timeout = (self.timeouts.connect, read_timeout or self.timeouts.read)
            failure: DataverseError
            try:
                response = self._session.request(
                    method,
                    url,
                    data=data,
                    headers=self._headers(token, headers, data is not None),
                    timeout=timeout,
                    stream=stream,
                )
            except requests.exceptions.SSLError as exc:
                raise TlsError(
                    f"TLS verification of {self.environment_url} failed.",
                    environment_url=self.environment_url,
                    details={"cause": str(exc)[:500]},
                ) from exc
            except requests.exceptions.ConnectTimeout as exc:
                failure = ConnectionFailed(
                    f"{self.environment_url} could not be reached: no connection within {timeout[0]} s.",
                    environment_url=self.environment_url,
                    details={"cause": str(exc)[:500]},
                )
                failure.__cause__ = exc
            except requests.exceptions.ReadTimeout as exc:
                failure = (
                    RequestTimeout(
                        f"{self.environment_url} gave no answer within {timeout[1]} s.",
                        environment_url=self.environment_url,
                        details={"cause": str(exc)[:500]},
                    )
                    if idempotent
                    else SubmissionOutcomeUnknown(
                        f"no answer within {timeout[1]}s; the request may have been accepted",
                        environment_url=self.environment_url,
                    )
                )
                failure.__cause__ = exc
            except requests.exceptions.RequestException as exc:
                never_sent = _never_sent(exc)
                failure = (
                    ConnectionFailed(
                        f"{self.environment_url} could not be reached: {network_reason(exc)}.",
                        environment_url=self.environment_url,
                        details={"cause": str(exc)[:500]},
                    )
                    if idempotent or never_sent
                    else SubmissionOutcomeUnknown(
                        f"connection lost; the request may have been accepted: {exc}",
                        environment_url=self.environment_url,
                    )
                )
                failure.__cause__ = exc
            else:
                status = response.status_code
                if status < 300:
                    return response
                if status == 401 and not refreshed:
                    # docs/dataverse.md §13.1: drop the token from msal's cache and acquire once more.
                    response.close()
                    self.token_provider.invalidate_token(self.scope, token)
                    refreshed = True
                    attempt -= 1
                    continue
                try:
                    failure = self._error_from_response(response)
                finally:
                    response.close()
                if status == 429 and isinstance(failure, TransientError) and failure.retry_after is not None:
                    _extend_not_before(self._key, time.time() + failure.retry_after)
                if status == 429 and isinstance(failure, Throttled):
                    self._report_throttled(failure.retry_after)
                if not idempotent and status in (502, 504):
                    failure = SubmissionOutcomeUnknown(
                        f"gateway error {status}; the request may have been accepted: {failure.message}",
                        http_status=status,
                        code=failure.code,
                        environment_url=self.environment_url,
                    )
            if not self._should_retry(failure, idempotent, attempt):
                raise failure
            delay = policy.backoff(attempt, self._rng)
            if isinstance(failure, TransientError) and failure.retry_after is not None:
                delay = max(delay, failure.retry_after) if not isinstance(failure, Throttled) else 0.0
            logger.info(
                "retrying %s %s after %s (attempt %d, wait %.1fs)",
                method,
                resource,
                type(failure).__name__,
                attempt,
                delay,
            )
            if delay > 0:
                self._sleep(delay)

    def _report_throttled(self, retry_after: float | None) -> None:
        if self._on_throttled is None:
            return
        try:
            self._on_throttled(retry_after)
        except Exception:  # counting is observability; it must never change what the call does
            logger.warning("on_throttled callback failed for %s", self.environment_url, exc_info=True)

    def _should_retry(self, failure: DataverseError, idempotent: bool, attempt: int) -> bool:
        if not idempotent or attempt >= self.retry_policy.max_attempts:
            return False
        if isinstance(failure, EnvironmentBusy | SubmissionOutcomeUnknown):
            return False
        if not isinstance(failure, TransientError):
            return False
        # A server-requested wait longer than we sleep through is the caller's to schedule.
        return failure.retry_after is None or failure.retry_after <= self.retry_policy.max_retry_after

    def _json(self, response: requests.Response) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise InvalidResponse(
                f"expected JSON from {response.request.method} {response.url}: {exc}",
                http_status=response.status_code,
                environment_url=self.environment_url,
            ) from exc
        finally:
            response.close()

    def _get(self, resource: str, *, headers: Mapping[str, str] | None = None) -> Any:
        return self._json(self._send("GET", resource, headers=headers, idempotent=True))

    def _post(self, action: str, body: Mapping[str, Any], *, idempotent: bool) -> Any:
        response = self._send("POST", action, json_body=body, idempotent=idempotent)
        if response.status_code == 204 or not response.content:
            response.close()
            return {}
        return self._json(response)

    def _get_all(self, resource: str, *, limit: int | None = None) -> list[dict[str, Any]]:
        """Follow ``@odata.nextLink`` until the collection ends (docs/dataverse.md §1.2, ``odata.maxpagesize``)."""
        records: list[dict[str, Any]] = []
        next_url: str | None = resource
        headers = {"Prefer": f"odata.maxpagesize={self.page_size}"}
        while next_url:
            if next_url.startswith("https://"):
                self._check_same_origin(next_url)
            payload = self._get(next_url, headers=headers)
            if not isinstance(payload, Mapping) or not isinstance(payload.get("value"), list):
                raise InvalidResponse(f"expected an OData collection from {next_url}")
            records.extend(item for item in payload["value"] if isinstance(item, dict))
            if limit is not None and len(records) >= limit:
                return records[:limit]
            link = payload.get("@odata.nextLink")
            next_url = link if isinstance(link, str) and link else None
        return records

    # -- identity and version --


def _never_sent(exc: requests.exceptions.RequestException) -> bool:
    """True when the failure happened before a connection existed (DNS, refused), so nothing was sent."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, urllib3.exceptions.NewConnectionError | urllib3.exceptions.NameResolutionError):
            return True
        if isinstance(current, urllib3.exceptions.MaxRetryError) and current.reason is not None:
            current = current.reason
            continue
        nested = current.args[0] if current.args and isinstance(current.args[0], BaseException) else None
        current = nested or current.__cause__ or current.__context__
    return False
