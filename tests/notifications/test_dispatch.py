"""The dispatcher: audit events above the cursor become deliveries for the subscribers that asked for
them and may see them; nothing twice, nothing from before a subscription, only successes (and
job.failed). Email goes once per event per subscriber."""

from __future__ import annotations

import pytest
from django.core import mail

from alm_portal.audit.context import AuditContext
from alm_portal.notifications import selectors, services
from alm_portal.notifications.models import EmailDelivery, NotificationCursor, WebhookDelivery
from tests.notifications.conftest import emit, promotion_ref

pytestmark = pytest.mark.django_db

HOOK = "https://hooks.example.com/alm"


def _seqs(endpoint) -> list[int]:
    return sorted(WebhookDelivery.objects.filter(endpoint=endpoint).values_list("audit_seq", flat=True))


def _context(user) -> AuditContext:
    return AuditContext.for_user(user, auth_method="session")


def _subscribe(user, events, email=None):
    if email is not None or not user.email:
        user.email = email or f"{user.username}@example.com"
        user.save(update_fields=["email"])
    return services.email_subscription_set(user=user, events=events, context=_context(user))


def _send_all_email():
    for pk in EmailDelivery.objects.filter(status="pending").values_list("pk", flat=True):
        services.email_delivery_attempt(delivery_id=pk)


# --- cursor ----------------------------------------------------------------------------------------


def test_nothing_listens_so_the_cursor_jumps_to_the_head(environment):
    for _ in range(3):
        emit("drift.detected", target=environment)
    report = services.notifications_dispatch()
    assert report.webhook_deliveries == 0 and report.email_deliveries == 0
    assert services.cursor_position() == selectors.audit_head_seq()


def test_each_event_is_dispatched_once_however_often_the_dispatcher_runs(make_endpoint, environment):
    endpoint = make_endpoint(HOOK, events=["drift."])
    first = emit("drift.detected", target=environment)
    second = emit("drift.resolved", target=environment)

    assert services.notifications_dispatch().webhook_deliveries == 2
    assert services.notifications_dispatch().webhook_deliveries == 0
    third = emit("drift.detected", target=environment)
    assert services.notifications_dispatch().webhook_deliveries == 1
    assert _seqs(endpoint) == [first.seq, second.seq, third.seq]
    assert services.cursor_position() == third.seq


def test_small_batches_cover_every_event_in_order(make_endpoint, environment):
    endpoint = make_endpoint(HOOK, events=["drift.detected"])
    services.notifications_dispatch()  # past the fixtures' own events
    events = [emit("drift.detected", target=environment) for _ in range(12)]
    report = services.notifications_dispatch(batch_size=5)
    assert report.batches == 3 and report.webhook_deliveries == 12
    assert _seqs(endpoint) == [event.seq for event in events]


def test_a_run_stops_after_its_batch_budget_and_the_next_run_continues(make_endpoint, environment):
    endpoint = make_endpoint(HOOK, events=["drift.detected"])
    services.notifications_dispatch()  # past the fixtures' own events
    events = [emit("drift.detected", target=environment) for _ in range(6)]
    assert services.notifications_dispatch(batch_size=2, max_batches=2).webhook_deliveries == 4
    assert services.notifications_dispatch(batch_size=2, max_batches=2).webhook_deliveries == 2
    assert _seqs(endpoint) == [event.seq for event in events]


def test_a_missing_cursor_row_restarts_after_the_newest_delivered_event(make_endpoint, environment):
    endpoint = make_endpoint(HOOK, events=["drift."])
    first = emit("drift.detected", target=environment)
    emit("environment.updated", target=environment)
    services.notifications_dispatch()
    NotificationCursor.objects.all().delete()
    second = emit("drift.detected", target=environment)
    assert services.notifications_dispatch().webhook_deliveries == 1
    assert _seqs(endpoint) == [first.seq, second.seq]
    assert NotificationCursor.objects.get().last_seq == selectors.audit_head_seq()


def test_the_dispatch_publishes_the_new_deliveries_after_commit(
    make_endpoint, environment, published, django_capture_on_commit_callbacks
):
    make_endpoint(HOOK, events=["drift."])
    emit("drift.detected", target=environment)
    published.clear()
    with django_capture_on_commit_callbacks(execute=True):
        services.notifications_dispatch()
    delivery = WebhookDelivery.objects.get()
    assert published == [("notifications.deliver_webhook", (delivery.pk,))]


def test_the_beat_task_dispatches_and_publishes_what_is_due(make_endpoint, environment, published):
    from alm_portal.notifications import tasks

    make_endpoint(HOOK, events=["drift."])
    emit("drift.detected", target=environment)
    published.clear()
    result = tasks.dispatch()
    assert "webhooks=1 emails=0 due=1" in result
    assert published == [("notifications.deliver_webhook", (WebhookDelivery.objects.get().pk,))]


# --- what matches -------------------------------------------------------------------------------------


def test_codes_and_prefixes_match_and_nothing_else(make_endpoint, environment):
    prefix = make_endpoint(HOOK, events=["drift."])
    code = make_endpoint(HOOK, events=["drift.resolved"])
    emit("drift.detected", target=environment)
    emit("drift.resolved", target=environment)
    emit("driftwood.detected", target=environment)
    emit("environment.updated", target=environment)
    services.notifications_dispatch()
    assert list(WebhookDelivery.objects.filter(endpoint=prefix).values_list("event", flat=True).order_by("pk")) == [
        "drift.detected",
        "drift.resolved",
    ]
    assert list(WebhookDelivery.objects.filter(endpoint=code).values_list("event", flat=True)) == ["drift.resolved"]


def test_only_successes_notify_except_a_failed_job(make_endpoint, environment):
    endpoint = make_endpoint(HOOK, events=["job.", "api.", "drift."])
    emit("job.failed", target=environment, outcome="failed", after={"error_code": "import_failed"})
    emit("api.denied", outcome="denied")
    emit("drift.detected", target=environment, outcome="failed")
    emit("job.succeeded", target=environment)
    services.notifications_dispatch()
    assert sorted(WebhookDelivery.objects.filter(endpoint=endpoint).values_list("event", flat=True)) == [
        "job.failed",
        "job.succeeded",
    ]
    failed = WebhookDelivery.objects.get(event="job.failed")
    assert failed.payload["data"]["outcome"] == "failed"
    assert failed.payload["data"]["after"] == {"error_code": "import_failed"}


def test_events_before_an_endpoint_existed_are_not_delivered_to_it(make_endpoint, environment):
    emit("drift.detected", target=environment)
    endpoint = make_endpoint(HOOK, events=["drift."])
    after = emit("drift.detected", target=environment)
    services.notifications_dispatch()
    assert _seqs(endpoint) == [after.seq]


def test_a_team_endpoint_hears_only_about_its_team_and_a_portal_wide_one_about_all(
    make_endpoint, environment, other_environment, team
):
    team_hook = make_endpoint(HOOK, events=["drift."], team=team)
    everything = make_endpoint(HOOK, events=["drift."])
    ours = emit("drift.detected", target=environment)
    theirs = emit("drift.detected", target=other_environment)
    # The related object decides when the object itself names no team (credential.expiring, drift findings).
    related = emit("drift.resolved", target=promotion_ref(999_999), related=environment)
    unknown = emit("drift.resolved", target=promotion_ref(999_998))
    services.notifications_dispatch()
    assert _seqs(team_hook) == [ours.seq, related.seq]
    assert _seqs(everything) == [ours.seq, theirs.seq, related.seq, unknown.seq]


def test_the_ping_event_is_never_dispatched(make_endpoint, admin_context):
    listener = make_endpoint(HOOK, events=["webhook."])
    target = make_endpoint(HOOK, events=["drift."])
    ping = services.webhook_endpoint_test(endpoint=target, context=admin_context)
    services.notifications_dispatch()
    assert not WebhookDelivery.objects.filter(endpoint=listener, audit_seq=ping.audit_seq).exists()
    assert WebhookDelivery.objects.filter(endpoint=target).count() == 1


def test_an_endpoint_switched_off_gets_nothing_and_on_again_only_what_follows(
    make_endpoint, environment, admin_context
):
    endpoint = make_endpoint(HOOK, events=["drift."])
    services.webhook_endpoint_update(endpoint=endpoint, is_active=False, context=admin_context)
    emit("drift.detected", target=environment)
    services.webhook_endpoint_update(endpoint=endpoint, is_active=True, context=admin_context)
    after = emit("drift.detected", target=environment)
    services.notifications_dispatch()
    assert _seqs(endpoint) == [after.seq]


# --- email -------------------------------------------------------------------------------------------


def test_one_email_per_event_per_subscriber(maker, approver, environment):
    _subscribe(maker, ["drift."])
    event = emit("drift.detected", target=environment, after={"kind": "missing", "unique_name": "ContosoCore"})

    services.notifications_dispatch()
    services.notifications_dispatch()
    _send_all_email()
    _send_all_email()
    for pk in EmailDelivery.objects.values_list("pk", flat=True):
        assert services.email_delivery_attempt(delivery_id=pk).sent is False

    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["maker@example.com"]
    assert message.subject == "[ALM Portal] drift.detected: contoso-test"
    assert "unique_name: ContosoCore" in message.body and f"#{event.seq}" in message.body
    assert message.extra_headers["X-ALM-Event"] == "drift.detected"
    delivery = EmailDelivery.objects.get()
    assert delivery.status == "delivered" and delivery.attempts == 1 and delivery.audit_seq == event.seq


def test_people_are_mailed_only_about_what_they_may_see(maker, outsider, auditor, admin_user, other_environment):
    for person in (maker, outsider, auditor, admin_user):
        _subscribe(person, ["drift.", "user."])
    emit("drift.detected", target=other_environment)  # fabrikam's environment
    emit("user.role_changed", target=maker)  # about no team: admins and auditors only
    services.notifications_dispatch()
    _send_all_email()
    got = sorted((m.to[0], m.subject.split(":")[0]) for m in mail.outbox)
    assert got == [
        ("admin@example.com", "[ALM Portal] drift.detected"),
        ("admin@example.com", "[ALM Portal] user.role_changed"),
        ("auditor@example.com", "[ALM Portal] drift.detected"),
        ("auditor@example.com", "[ALM Portal] user.role_changed"),
        ("maker2@example.com", "[ALM Portal] drift.detected"),
    ]


def test_nobody_is_mailed_about_their_own_action(maker, environment):
    _subscribe(maker, ["drift."])
    emit("drift.detected", target=environment, context=_context(maker))
    services.notifications_dispatch()
    assert EmailDelivery.objects.count() == 0


def test_events_before_opting_in_and_after_opting_out_are_not_mailed(maker, environment):
    emit("drift.detected", target=environment)
    _subscribe(maker, ["drift."])
    during = emit("drift.detected", target=environment)
    services.notifications_dispatch()
    services.email_subscription_set(user=maker, events=["drift."], is_active=False, context=_context(maker))
    emit("drift.detected", target=environment)
    services.notifications_dispatch()
    assert list(EmailDelivery.objects.values_list("audit_seq", flat=True)) == [during.seq]


def test_opting_out_before_the_send_cancels_the_queued_email(maker, environment):
    _subscribe(maker, ["drift."])
    emit("drift.detected", target=environment)
    services.notifications_dispatch()
    services.email_subscription_set(user=maker, events=[], is_active=False, context=_context(maker))
    _send_all_email()
    assert mail.outbox == []
    assert EmailDelivery.objects.get().status == "failed"


def test_a_failing_mail_server_is_retried(maker, environment, monkeypatch):
    _subscribe(maker, ["drift."])
    emit("drift.detected", target=environment)
    services.notifications_dispatch()
    delivery = EmailDelivery.objects.get()

    def down(self, *args, **kwargs):
        raise ConnectionRefusedError("smtp down")

    monkeypatch.setattr("django.core.mail.EmailMessage.send", down)
    assert services.email_delivery_attempt(delivery_id=delivery.pk).status == "pending"
    delivery.refresh_from_db()
    assert delivery.last_error == "Sending failed (ConnectionRefusedError)." and delivery.attempts == 1
    monkeypatch.undo()
    assert services.email_delivery_attempt(delivery_id=delivery.pk, now=delivery.next_attempt_at).status == "delivered"
    assert len(mail.outbox) == 1


def test_opting_in_needs_an_address_and_valid_events(maker):
    from alm_portal.errors import ValidationFailed

    with pytest.raises(ValidationFailed) as no_address:
        services.email_subscription_set(user=maker, events=["drift."], context=_context(maker))
    assert "no email address" in no_address.value.message
    maker.email = "maker@example.com"
    maker.save(update_fields=["email"])
    with pytest.raises(ValidationFailed) as bad:
        services.email_subscription_set(user=maker, events=["drift.*"], context=_context(maker))
    assert bad.value.details == {"events": ["Not an event code or prefix: 'drift.*'."]}


# --- approvers of promotion.requested ---------------------------------------------------------------


@pytest.fixture
def promotion(team, maker, environment, make_user):
    from alm_portal.accounts import services as accounts
    from deployments.models import Pipeline, Promotion, Stage
    from solutions.models import Solution, SolutionVersion

    reviewers = accounts.team_create(name="Reviewers", slug="reviewers", context=AuditContext.system())
    pipeline = Pipeline.objects.create(name="Contoso", team=team, development_environment=environment)
    stage = Stage.objects.create(pipeline=pipeline, name="test", order=1, target_environment=environment)
    solution = Solution.objects.create(unique_name="ContosoCore", team=team, pipeline=pipeline)
    version = SolutionVersion.objects.create(
        solution=solution,
        version="1.0.0.1",
        version_key="1.0.0.1",
        major=1,
        minor=0,
        build=0,
        revision=1,
        source_kind="uploaded",
        managed_sha256="a" * 64,
        managed_path="solutions/ContosoCore/1.0.0.1/managed.zip",
        managed_size=1024,
    )
    promotion = Promotion.objects.create(
        solution=solution,
        version=version,
        stage=stage,
        target_environment=environment,
        artifact_sha256="a" * 64,
        requested_by=maker,
    )
    return promotion, stage, reviewers


def test_the_stages_approvers_who_opted_in_are_mailed_about_a_request(promotion, maker, make_user, outsider):
    promotion, stage, reviewers = promotion
    named = make_user("named", "approver")  # in no team: sees the promotion only as a named approver
    through_team = make_user("reviewer", "approver", reviewers)
    not_opted_in = make_user("quiet", "approver")
    stranger = make_user("stranger", "approver")  # opted in, but not named on this stage
    stage.approver_users.add(named, not_opted_in)
    stage.approver_teams.add(reviewers)
    for person in (named, through_team, stranger, outsider):
        _subscribe(person, ["promotion.requested"])

    emit("promotion.requested", target=promotion, related=stage, context=_context(maker))
    services.notifications_dispatch()
    _send_all_email()

    assert sorted(m.to[0] for m in mail.outbox) == ["named@example.com", "reviewer@example.com"]
    assert all(m.subject.startswith("[ALM Portal] promotion.requested: ContosoCore 1.0.0.1") for m in mail.outbox)


def test_without_a_promotion_model_approvers_are_skipped_gracefully(promotion, maker, make_user, monkeypatch):
    promotion, stage, _ = promotion
    named = make_user("named", "approver")
    stage.approver_users.add(named)
    _subscribe(named, ["promotion."])
    _subscribe(maker, ["promotion."])
    real = selectors._model
    monkeypatch.setattr(
        selectors, "_model", lambda app_label, name: None if app_label == "deployments" else real(app_label, name)
    )
    emit("promotion.requested", target=promotion)
    services.notifications_dispatch()
    _send_all_email()
    assert [m.to[0] for m in mail.outbox] == []  # no team known, not an admin: nobody outside admins


def test_a_promotion_event_reaches_its_team_and_a_team_endpoint(promotion, maker, make_endpoint, team, approver):
    promotion, stage, _ = promotion
    hook = make_endpoint(HOOK, events=["promotion."], team=team)
    _subscribe(approver, ["promotion.approved"])
    event = emit("promotion.approved", target=promotion, related=stage)
    services.notifications_dispatch()
    _send_all_email()
    assert _seqs(hook) == [event.seq]
    assert [m.to[0] for m in mail.outbox] == ["approver@example.com"]
