"""Webhook endpoints: URLs through the one outbound policy, the secret encrypted and never audited,
and exactly one audit event per change."""

from __future__ import annotations

import pytest

from alm_portal.audit.models import AuditEvent
from alm_portal.crypto import decrypt_secret
from alm_portal.errors import ValidationFailed
from alm_portal.notifications import services
from alm_portal.notifications.models import WebhookEndpoint

pytestmark = pytest.mark.django_db

SECRET = "a-webhook-secret-of-some-length"


def _create(admin_context, **overrides):
    values = {
        "name": "ci",
        "url": "https://hooks.example.com/alm",
        "events": ["promotion.", "drift.detected"],
        "secret": SECRET,
        "context": admin_context,
    }
    values.update(overrides)
    return services.webhook_endpoint_create(**values)


@pytest.mark.parametrize(
    ("url", "reason", "message"),
    [
        ("https://10.0.0.5/hook", "ip_literal", "IP addresses are not allowed; use the service's DNS name."),
        ("https://192.168.1.20/hook", "ip_literal", "IP addresses are not allowed; use the service's DNS name."),
        (
            "https://169.254.169.254/latest/meta-data",
            "ip_literal",
            "IP addresses are not allowed; use the service's DNS name.",
        ),
        ("https://[fd00:ec2::254]/", "ip_literal", "IP addresses are not allowed; use the service's DNS name."),
        ("http://hooks.example.com/alm", "scheme", "Only https URLs are allowed."),
        ("ftp://hooks.example.com/alm", "scheme", "Only https URLs are allowed."),
        ("https://hooks.example.com:8443/alm", "port", "Only the standard https port 443 is allowed."),
        (
            "https://user:pw@hooks.example.com/alm",
            "userinfo",
            "The URL must not contain user information (user:password@).",
        ),
        ("https://hooks.example.com/alm?token=1", "query", "The URL must not have a query or a fragment."),
        ("https://xn--80ak6aa92e.com/alm", "idn", "International (punycode) host names are refused."),
    ],
)
def test_urls_the_outbound_policy_refuses(admin_context, url, reason, message):
    with pytest.raises(ValidationFailed) as refused:
        _create(admin_context, url=url)
    assert refused.value.details == {"url": [message], "reason": reason}
    assert not WebhookEndpoint.objects.exists()
    assert not AuditEvent.objects.filter(action="webhook.created").exists()


def test_loopback_is_refused_unless_allowed(admin_context, settings):
    settings.ALM_ALLOW_LOOPBACK = False
    with pytest.raises(ValidationFailed) as refused:
        _create(admin_context, url="https://127.0.0.1:8443/hook")
    assert refused.value.details["reason"] == "loopback"


def test_the_secret_is_encrypted_at_rest_and_absent_from_the_audit_log(admin_context, team):
    endpoint = _create(admin_context, team=team)
    stored = WebhookEndpoint.objects.get(pk=endpoint.pk)
    assert SECRET not in stored.secret_ciphertext
    assert decrypt_secret(stored.secret_ciphertext) == SECRET

    created = AuditEvent.objects.get(action="webhook.created")
    assert created.object_id == str(endpoint.pk) and created.related_id == str(team.pk)
    assert created.after == {
        "name": "ci",
        "url": "https://hooks.example.com/alm",
        "team_id": team.pk,
        "events": ["drift.detected", "promotion."],
        "is_active": True,
    }
    assert stored.since_seq == created.seq


def test_rotating_the_secret_is_audited_without_it(admin_context):
    endpoint = _create(admin_context)
    services.webhook_endpoint_update(endpoint=endpoint, secret="a-brand-new-secret-value", context=admin_context)
    updated = AuditEvent.objects.get(action="webhook.updated")
    assert updated.before == {} and updated.after == {"shared_key_changed": True}
    endpoint.refresh_from_db()
    assert decrypt_secret(endpoint.secret_ciphertext) == "a-brand-new-secret-value"
    for event in AuditEvent.objects.all():
        assert SECRET not in str(event.before) + str(event.after) + event.message
        assert "a-brand-new-secret-value" not in str(event.before) + str(event.after) + event.message


def test_an_update_records_what_changed_and_nothing_when_nothing_did(admin_context):
    endpoint = _create(admin_context)
    services.webhook_endpoint_update(endpoint=endpoint, events=["drift.detected", "promotion."], context=admin_context)
    assert not AuditEvent.objects.filter(action="webhook.updated").exists()
    services.webhook_endpoint_update(endpoint=endpoint, events=["job.failed"], is_active=False, context=admin_context)
    updated = AuditEvent.objects.get(action="webhook.updated")
    assert updated.before == {"events": ["drift.detected", "promotion."], "is_active": True}
    assert updated.after == {"events": ["job.failed"], "is_active": False}


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"secret": "short"}, "secret"),
        ({"secret": " padded-secret-with-spaces "}, "secret"),
        ({"events": []}, "events"),
        ({"events": ["promotion"]}, "events"),
        ({"events": ["*"]}, "events"),
        ({"name": "  "}, "name"),
    ],
)
def test_invalid_input_names_the_field(admin_context, overrides, field):
    with pytest.raises(ValidationFailed) as refused:
        _create(admin_context, **overrides)
    assert field in refused.value.details


def test_names_are_unique(admin_context):
    _create(admin_context)
    with pytest.raises(ValidationFailed) as refused:
        _create(admin_context)
    assert refused.value.details == {"name": ["A webhook with this name exists."]}


def test_deleting_is_audited_and_takes_the_delivery_log_along(admin_context, environment):
    from tests.notifications.conftest import emit

    endpoint = _create(admin_context, events=["drift."])
    emit("drift.detected", target=environment)
    services.notifications_dispatch()
    services.webhook_endpoint_delete(endpoint=endpoint, context=admin_context)
    deleted = AuditEvent.objects.get(action="webhook.deleted")
    assert deleted.object_id == str(endpoint.pk) and deleted.before["name"] == "ci"
    assert not WebhookEndpoint.objects.exists()
