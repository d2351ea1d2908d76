"""Who did something, from where: passed explicitly into every audited service (docs/architecture.md §3 rule 4).

Business code never reads the current user or request from thread-locals; views build an
AuditContext from the request, Celery tasks rebuild one from `as_dict()` data, and commands use
`AuditContext.system()`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from alm_portal.audit.choices import ActorKind

# A sign-in view may store how the session was authenticated (e.g. "sso") under this session key;
# from_request() then reports "session:<value>" instead of plain "session".
SESSION_AUTH_METHOD_KEY = "alm_auth_method"

API_TOKEN_METHOD_PREFIX = "api_token:"


@dataclass(frozen=True)
class AuditContext:
    """The actor half of an audit event. Values are frozen at the time of the action: a user who is
    renamed later still appears under the name they had."""

    actor_id: int | None
    actor_display: str
    actor_kind: str
    auth_method: str
    request_id: str = ""
    client_ip: str | None = None
    user_agent: str = ""

    def __post_init__(self) -> None:
        if self.actor_kind not in ActorKind.values:
            raise ValueError(f"actor_kind must be one of {ActorKind.values}, got {self.actor_kind!r}")

    @classmethod
    def for_user(
        cls,
        user: Any,
        *,
        auth_method: str,
        request_id: str = "",
        client_ip: str | None = None,
        user_agent: str = "",
    ) -> AuditContext:
        """A person acting; an `auth_method` of "api_token:<id>" makes the actor kind api_token."""
        kind = ActorKind.API_TOKEN if auth_method.startswith(API_TOKEN_METHOD_PREFIX) else ActorKind.USER
        return cls(
            actor_id=user.pk,
            actor_display=display_name_of(user),
            actor_kind=kind,
            auth_method=auth_method,
            request_id=request_id or "",
            client_ip=client_ip or None,
            user_agent=user_agent or "",
        )

    @classmethod
    def system(cls, request_id: str = "") -> AuditContext:
        """The portal itself: management commands, migrations of data, automatic approvals."""
        return cls(
            actor_id=None, actor_display="system", actor_kind=ActorKind.SYSTEM, auth_method="", request_id=request_id
        )

    @classmethod
    def worker(cls, request_id: str) -> AuditContext:
        """A Celery worker finishing work; `request_id` is the one of the request that queued it."""
        return cls(
            actor_id=None, actor_display="worker", actor_kind=ActorKind.WORKER, auth_method="", request_id=request_id
        )

    @classmethod
    def from_request(cls, request: Any) -> AuditContext:
        """Build the context from a Django or DRF request (duck-typed, so accounts is not imported).

        Reads request.user, request.auth (an API token with `.id` when the call was authenticated by
        token), request.request_id and request.client_ip (set by the request-id middleware, which
        trusts only the configured proxy header) and the User-Agent header. An anonymous request
        yields a user-kind context without an actor id.
        """
        request_id = getattr(request, "request_id", "") or ""
        client_ip = getattr(request, "client_ip", None) or None
        user_agent = request.META.get("HTTP_USER_AGENT", "") or ""
        user = getattr(request, "user", None)
        if user is None or not getattr(user, "is_authenticated", False):
            return cls(
                actor_id=None,
                actor_display="anonymous",
                actor_kind=ActorKind.USER,
                auth_method="",
                request_id=request_id,
                client_ip=client_ip,
                user_agent=user_agent,
            )
        token = getattr(request, "auth", None)
        token_id = getattr(token, "id", None) if token is not None else None
        if token_id is not None:
            auth_method = f"{API_TOKEN_METHOD_PREFIX}{token_id}"
        else:
            session = getattr(request, "session", None)
            how = session.get(SESSION_AUTH_METHOD_KEY) if session is not None else None
            auth_method = f"session:{how}" if how else "session"
        return cls.for_user(
            user, auth_method=auth_method, request_id=request_id, client_ip=client_ip, user_agent=user_agent
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe form for Celery task arguments (tasks take plain data, never request objects)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AuditContext:
        return cls(**data)


@dataclass(frozen=True)
class ObjectRef:
    """The type/id/repr triple an event stores for its object or related object. Services normally
    pass model instances; an ObjectRef covers things that are not rows (a username that failed to
    sign in, an environment URL that was refused)."""

    type: str
    id: str
    repr: str

    @classmethod
    def of(cls, instance: Any) -> ObjectRef:
        """`app_label.model` (or the model's `audit_object_type`, which a model that moved between apps keeps
        so its old and new events name it alike), the primary key as text and str(instance), frozen now."""
        if instance.pk is None:
            raise ValueError(f"cannot audit an unsaved {type(instance).__name__}: save it first")
        meta = instance._meta
        object_type = getattr(type(instance), "audit_object_type", None) or f"{meta.app_label}.{meta.model_name}"
        return cls(type=object_type, id=str(instance.pk), repr=str(instance))


def display_name_of(user: Any) -> str:
    """`Display Name (username)`, or just the username when there is no distinct display name."""
    username = user.get_username()
    display = getattr(user, "display_name", "") or ""
    if not display and hasattr(user, "get_full_name"):
        display = user.get_full_name() or ""
    display = display.strip()
    return f"{display} ({username})" if display and display != username else username
