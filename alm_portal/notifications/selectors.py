"""Reads for notifications: who may see endpoints and deliveries, what is due, and which team an
audit event is about (so team-scoped endpoints and people only hear about what they may see).

Other apps' models are read through the app registry (apps.get_model), never imported: this app
depends on the audit log only, and an app that is missing (or a model not yet written) just means
events about it belong to no team, which only admins, auditors and portal-wide endpoints receive.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime

from django.apps import apps
from django.core.exceptions import FieldError
from django.db.models import Max, QuerySet

from alm_portal.accounts import policy
from alm_portal.accounts.models import TeamMembership, User
from alm_portal.audit.models import AuditEvent
from alm_portal.errors import NotFound, PermissionRefused
from alm_portal.notifications.choices import DeliveryStatus
from alm_portal.notifications.models import EmailDelivery, EmailSubscription, WebhookDelivery, WebhookEndpoint

PROMOTION_TYPE = "deployments.promotion"

# "<app_label>.<model_name>" of an audited object → (app label, model name, lookup of its team id).
_TEAM_LOOKUPS: dict[str, tuple[str, str, str]] = {
    "accounts.team": ("accounts", "Team", "pk"),
    "environments.environment": ("environments", "Environment", "team_id"),
    "environments.credential": ("environments", "Credential", "environment__team_id"),
    "environments.driftfinding": ("environments", "DriftFinding", "environment__team_id"),
    "solutions.solution": ("solutions", "Solution", "team_id"),
    "solutions.solutionversion": ("solutions", "SolutionVersion", "solution__team_id"),
    "deployments.pipeline": ("deployments", "Pipeline", "team_id"),
    "deployments.stage": ("deployments", "Stage", "pipeline__team_id"),
    PROMOTION_TYPE: ("deployments", "Promotion", "solution__team_id"),
    "deployments.job": ("jobs", "Job", "environment__team_id"),
}


# --- API reads ---------------------------------------------------------------------------------


def _require_reader(user: User) -> None:
    """Webhooks are administration: admins manage them, auditors may read them, nobody else."""
    if not policy.sees_all_teams(user):
        raise PermissionRefused("Only admins and auditors may see webhooks.")


def webhook_endpoints_visible_to(*, user: User) -> QuerySet[WebhookEndpoint]:
    _require_reader(user)
    return WebhookEndpoint.objects.select_related("team", "created_by").defer("secret_ciphertext")


def webhook_endpoint_visible_to(*, user: User, pk: int) -> WebhookEndpoint:
    endpoint = webhook_endpoints_visible_to(user=user).filter(pk=pk).first()
    if endpoint is None:
        raise NotFound("No such webhook.")
    return endpoint


def webhook_deliveries_of(*, endpoint: WebhookEndpoint, status: str | None = None) -> QuerySet[WebhookDelivery]:
    """The endpoint's delivery log, newest first."""
    queryset = WebhookDelivery.objects.filter(endpoint=endpoint)
    if status:
        queryset = queryset.filter(status=status)
    return queryset.order_by("-created_at", "-id")


def email_subscription_of(*, user: User) -> EmailSubscription | None:
    return EmailSubscription.objects.filter(user=user).first()


# --- the dispatcher's reads ----------------------------------------------------------------------


def audit_head_seq() -> int:
    return AuditEvent.objects.aggregate(head=Max("seq"))["head"] or 0


def last_delivered_seq() -> int:
    """The newest audit seq that any delivery row refers to (0 when there is none)."""
    webhooks = WebhookDelivery.objects.aggregate(top=Max("audit_seq"))["top"] or 0
    emails = EmailDelivery.objects.aggregate(top=Max("audit_seq"))["top"] or 0
    return max(webhooks, emails)


def audit_events_between(*, after_seq: int, up_to_seq: int, limit: int) -> list[AuditEvent]:
    """Events after_seq < seq <= up_to_seq in seq order, at most `limit`."""
    return list(AuditEvent.objects.filter(seq__gt=after_seq, seq__lte=up_to_seq).order_by("seq")[:limit])


def active_webhook_endpoints() -> list[WebhookEndpoint]:
    return list(WebhookEndpoint.objects.filter(is_active=True).defer("secret_ciphertext").order_by("pk"))


def active_email_subscriptions() -> list[EmailSubscription]:
    """Subscriptions of active people who have an address to write to."""
    return list(
        EmailSubscription.objects.filter(is_active=True, user__is_active=True)
        .exclude(user__email="")
        .select_related("user")
        .order_by("pk")
    )


def team_ids_of_users(*, user_ids: Iterable[int]) -> dict[int, set[int]]:
    memberships: dict[int, set[int]] = defaultdict(set)
    for user_id, team_id in TeamMembership.objects.filter(user_id__in=set(user_ids)).values_list("user_id", "team_id"):
        memberships[user_id].add(team_id)
    return memberships


def _model(app_label: str, model_name: str) -> type | None:
    try:
        return apps.get_model(app_label, model_name)
    except LookupError:
        return None


def _int_ids(ids: Iterable[str]) -> set[int]:
    return {int(value) for value in ids if value.isdigit()}


def teams_of_objects(*, refs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int | None]:
    """The owning team id of each (object type, object id); None when unknown. One query per type."""
    by_type: dict[str, set[str]] = defaultdict(set)
    for object_type, object_id in refs:
        if object_type in _TEAM_LOOKUPS and object_id:
            by_type[object_type].add(object_id)
    found: dict[tuple[str, str], int | None] = {}
    for object_type, ids in by_type.items():
        app_label, model_name, lookup = _TEAM_LOOKUPS[object_type]
        model = _model(app_label, model_name)
        if model is None:
            continue
        try:
            rows = model._default_manager.filter(pk__in=_int_ids(ids)).values_list("pk", lookup)  # type: ignore[attr-defined]
            for pk, team_id in rows:
                found[(object_type, str(pk))] = team_id
        except FieldError:
            continue
    return found


def event_teams(*, events: Iterable[AuditEvent]) -> dict[int, int | None]:
    """{seq: team id} for each event: its object's team, else its related object's, else None."""
    events = list(events)
    refs = {(e.object_type, e.object_id) for e in events} | {(e.related_type, e.related_id) for e in events}
    teams = teams_of_objects(refs=refs)
    result: dict[int, int | None] = {}
    for event in events:
        team_id = teams.get((event.object_type, event.object_id))
        if team_id is None:
            team_id = teams.get((event.related_type, event.related_id))
        result[event.seq] = team_id
    return result


def promotion_approver_ids(*, promotion_ids: Iterable[str]) -> dict[str, set[int]]:
    """{promotion id (text): ids of the people its stage names as approvers, directly or by team}.

    Empty when the deployments app has no Promotion model: approvers are then simply not known.
    """
    promotion_model = _model("deployments", "Promotion")
    stage_model = _model("deployments", "Stage")
    ids = _int_ids(promotion_ids)
    if promotion_model is None or stage_model is None or not ids:
        return {}
    try:
        stage_of = dict(promotion_model._default_manager.filter(pk__in=ids).values_list("pk", "stage_id"))  # type: ignore[attr-defined]
        stage_ids = set(stage_of.values())
        users_by_stage: dict[int, set[int]] = defaultdict(set)
        direct = stage_model.approver_users.through  # type: ignore[attr-defined]
        for stage_id, user_id in direct.objects.filter(stage_id__in=stage_ids).values_list("stage_id", "user_id"):
            users_by_stage[stage_id].add(user_id)
        by_team = stage_model.approver_teams.through  # type: ignore[attr-defined]
        teams_by_stage: dict[int, set[int]] = defaultdict(set)
        for stage_id, team_id in by_team.objects.filter(stage_id__in=stage_ids).values_list("stage_id", "team_id"):
            teams_by_stage[stage_id].add(team_id)
    except (AttributeError, FieldError):
        return {}
    all_teams = set().union(*teams_by_stage.values()) if teams_by_stage else set()
    members: dict[int, set[int]] = defaultdict(set)
    for team_id, user_id in TeamMembership.objects.filter(team_id__in=all_teams).values_list("team_id", "user_id"):
        members[team_id].add(user_id)
    result: dict[str, set[int]] = {}
    for promotion_id, stage_id in stage_of.items():
        people = set(users_by_stage.get(stage_id, set()))
        for team_id in teams_by_stage.get(stage_id, set()):
            people |= members.get(team_id, set())
        result[str(promotion_id)] = people
    return result


# --- what is due ---------------------------------------------------------------------------------


def due_webhook_delivery_ids(*, now: datetime, limit: int) -> list[int]:
    return list(
        WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
        .order_by("next_attempt_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )


def due_email_delivery_ids(*, now: datetime, limit: int) -> list[int]:
    return list(
        EmailDelivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
        .order_by("next_attempt_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )
