"""record() and record_outcome(): one event per change, in the change's transaction, secrets never."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.db import IntegrityError, transaction
from django.test import RequestFactory

from alm_portal.audit import services
from alm_portal.audit.canonical import GENESIS_HASH, event_hash
from alm_portal.audit.context import AuditContext, ObjectRef
from alm_portal.audit.models import AuditEvent, AuditImmutableError
from alm_portal.audit.services import AuditUsageError, audit_verify, record, record_outcome, scrub_secrets

from .support import MAKER, Person, maker_context, write_events

pytestmark = pytest.mark.django_db


class Refused(Exception):
    pass


def test_an_event_records_who_what_where_and_links_to_the_previous_one():
    group = Group.objects.create(name="release-managers")
    with transaction.atomic():
        first = record(context=maker_context(), action="group.created", target=group, after={"name": group.name})
    with transaction.atomic():
        second = record(context=AuditContext.system(), action="group.checked", target=ObjectRef("x.y", "1", "thing"))

    stored = AuditEvent.objects.get(seq=first.seq)
    assert (stored.seq, stored.prev_hash) == (1, GENESIS_HASH)
    assert stored.actor_id == MAKER.pk
    assert stored.actor_display == "Mia Maker (maker)"
    assert (stored.actor_kind, stored.auth_method) == ("user", "session")
    assert (stored.object_type, stored.object_id, stored.object_repr) == (
        "auth.group",
        str(group.pk),
        "release-managers",
    )
    assert stored.after == {"name": "release-managers"}
    assert stored.before is None
    assert (stored.outcome, stored.request_id, stored.client_ip, stored.user_agent) == (
        "success",
        "req-test",
        "203.0.113.7",
        "pytest",
    )
    assert stored.occurred_at.utcoffset().total_seconds() == 0
    assert second.seq == 2
    assert second.prev_hash == stored.hash
    assert (second.actor_id, second.actor_kind, second.actor_display) == (None, "system", "system")


def test_stored_rows_hash_to_their_stored_hash():
    # Values the database re-spells (jsonb numbers, NUL, long text) are normalised before hashing.
    awkward = {
        "big": 1e20,
        "negative_zero": -0.0,
        "small": 1.5e-07,
        "nan": float("nan"),
        "nul": "a\x00b",
        "n": [1, 2.5],
    }
    with transaction.atomic():
        record(context=maker_context(user_agent="x" * 2000), action="test.awkward", before=awkward, message="m" * 900)
    row = AuditEvent.objects.values().get(seq=1)
    fields = {name: row[name] for name in row if name != "hash"}
    assert event_hash(fields) == row["hash"]
    assert row["before"]["big"] == 10**20
    assert len(row["user_agent"]) == 500
    assert audit_verify().ok


def test_record_outside_a_transaction_is_refused():
    with pytest.raises(AuditUsageError):
        record(context=maker_context(), action="test.event")
    assert not AuditEvent.objects.exists()


def test_a_rolled_back_change_leaves_neither_the_change_nor_its_event():
    with pytest.raises(Refused), transaction.atomic():
        group = Group.objects.create(name="doomed")
        record(context=maker_context(), action="group.created", target=group)
        raise Refused

    assert not Group.objects.filter(name="doomed").exists()
    assert not AuditEvent.objects.exists()


def test_a_failing_audit_write_rolls_the_change_back(monkeypatch):
    write_events(1)
    # Pretend another writer got the same seq first (as if the lock were missing): the primary key
    # refuses the duplicate, the error reaches the caller, and the caller's change is undone.
    monkeypatch.setattr(services, "hold_transaction_lock", lambda key: None)
    monkeypatch.setattr(services, "_chain_head", lambda: (0, GENESIS_HASH))
    with pytest.raises(IntegrityError), transaction.atomic():
        Group.objects.create(name="raced")
        record(context=maker_context(), action="group.created")

    assert not Group.objects.filter(name="raced").exists()
    assert AuditEvent.objects.count() == 1


def test_a_denied_action_leaves_one_denied_event_and_no_change():
    try:
        with transaction.atomic():
            Group.objects.create(name="not-allowed")
            raise Refused("makers may not create groups")
    except Refused as refusal:
        record_outcome(
            context=maker_context(),
            action="group.create_denied",
            outcome="denied",
            message=str(refusal),
            target=ObjectRef("auth.group", "", "not-allowed"),
        )

    assert not Group.objects.filter(name="not-allowed").exists()
    event = AuditEvent.objects.get()
    assert (event.action, event.outcome, event.message) == (
        "group.create_denied",
        "denied",
        "makers may not create groups",
    )


def test_record_outcome_inside_a_transaction_is_refused_because_the_rollback_would_drop_it():
    with pytest.raises(AuditUsageError), transaction.atomic():
        record_outcome(context=maker_context(), action="test.failed", outcome="failed", message="boom")
    assert not AuditEvent.objects.exists()


def test_record_outcome_is_only_for_denied_or_failed():
    with pytest.raises(ValueError):
        record_outcome(context=maker_context(), action="test.ok", outcome="success", message="")


def test_secrets_never_reach_the_log():
    before = {
        "name": "contoso-prod",
        "client_secret": "s3cr3t-1",
        "credential": {"tenant_id": "t", "password": "s3cr3t-2", "privateKey": "s3cr3t-3", "certificate": "s3cr3t-4"},
        "api_token": "s3cr3t-5",
        "tokens_revoked": 2,
        "items": [{"access-token": "s3cr3t-6", "id": 1}],
    }
    with transaction.atomic():
        event = record(
            context=maker_context(), action="environment.updated", before=before, after={"Secret": "s3cr3t-7"}
        )

    stored = AuditEvent.objects.values("before", "after").get(seq=event.seq)
    assert stored["before"] == {
        "name": "contoso-prod",
        "credential": {"tenant_id": "t"},
        "tokens_revoked": 2,
        "items": [{"id": 1}],
    }
    assert stored["after"] == {}
    assert "s3cr3t" not in str(stored)


def test_scrub_secrets_matches_words_not_substrings():
    kept = {"secretary": 1, "tokens_revoked": 2, "password_policy_id": None}
    assert scrub_secrets(kept) == {"secretary": 1, "tokens_revoked": 2}


@pytest.mark.parametrize("action", ["Promotion.Approved", "approved", "promotion approved", "promotion."])
def test_actions_are_dotted_lowercase_codes(action):
    with pytest.raises(ValueError), transaction.atomic():
        record(context=maker_context(), action=action)


def test_an_unsaved_target_is_refused():
    with pytest.raises(ValueError), transaction.atomic():
        record(context=maker_context(), action="group.created", target=Group(name="unsaved"))


def test_events_cannot_be_changed_or_deleted_through_the_orm():
    (event,) = write_events(1)
    with pytest.raises(AuditImmutableError):
        event.save()
    with pytest.raises(AuditImmutableError):
        event.delete()
    with pytest.raises(AuditImmutableError):
        AuditEvent.objects.filter(seq=1).update(message="x")
    with pytest.raises(AuditImmutableError):
        AuditEvent.objects.all().delete()


def test_a_users_events_survive_without_a_foreign_key_to_them():
    ghost = Person(pk=987654, username="ghost")
    with transaction.atomic():
        record(context=AuditContext.for_user(ghost, auth_method="session"), action="test.event")
    assert AuditEvent.objects.get().actor_id == 987654


class TestContext:
    def test_an_api_token_login_is_an_api_token_actor(self):
        context = AuditContext.for_user(
            MAKER, auth_method="api_token:12", request_id="r", client_ip=None, user_agent=""
        )
        assert (context.actor_kind, context.auth_method, context.actor_id) == ("api_token", "api_token:12", MAKER.pk)

    def test_worker_and_system(self):
        assert AuditContext.worker("req-9") == AuditContext(
            actor_id=None, actor_display="worker", actor_kind="worker", auth_method="", request_id="req-9"
        )
        assert AuditContext.system().actor_kind == "system"

    def test_from_request_reads_user_token_request_id_ip_and_agent(self):
        request = RequestFactory().get("/", HTTP_USER_AGENT="curl/8")
        request.user = type("U", (), {"is_authenticated": True, "pk": 5, "get_username": lambda self: "ann"})()
        request.auth = type("T", (), {"id": 33})()
        request.request_id = "abc"
        request.client_ip = "198.51.100.1"
        context = AuditContext.from_request(request)
        assert context == AuditContext(
            actor_id=5,
            actor_display="ann",
            actor_kind="api_token",
            auth_method="api_token:33",
            request_id="abc",
            client_ip="198.51.100.1",
            user_agent="curl/8",
        )

    def test_from_an_anonymous_request(self):
        request = RequestFactory().get("/")
        request.user = type("Anon", (), {"is_authenticated": False})()
        context = AuditContext.from_request(request)
        assert (context.actor_id, context.actor_kind, context.actor_display) == (None, "user", "anonymous")

    def test_survives_a_round_trip_through_task_arguments(self):
        context = maker_context()
        assert AuditContext.from_dict(context.as_dict()) == context

    def test_unknown_actor_kinds_are_refused(self):
        with pytest.raises(ValueError):
            AuditContext(actor_id=None, actor_display="x", actor_kind="robot", auth_method="")
