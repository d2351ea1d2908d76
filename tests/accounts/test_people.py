"""Roles, teams, sign-in and disabling: every change audited, disabling ends access in one request."""

from __future__ import annotations

import pytest
from django.contrib.sessions.models import Session
from django.core.management import call_command
from django.db import transaction

from alm_portal.accounts import policy, services
from alm_portal.accounts.models import ApiToken, Team, User
from alm_portal.audit.context import AuditContext
from alm_portal.audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def test_role_scopes_follow_design_section_5():
    assert policy.role_scopes("maker") == {"read", "request"}
    assert policy.role_scopes("approver") == {"read", "request", "approve"}
    assert policy.role_scopes("admin") == {"read", "request", "approve", "admin"}
    assert policy.role_scopes("auditor") == {"read"}


def test_team_visibility(maker, admin_user, auditor, outsider, team):
    assert policy.team_ids_visible_to(maker) == {team.pk}
    assert team.pk not in policy.team_ids_visible_to(outsider)
    assert policy.team_ids_visible_to(admin_user) is None
    assert policy.team_ids_visible_to(auditor) is None
    assert not policy.changes_anything(auditor)


def test_sign_in_success_and_failure_are_audited(client, maker):
    client.post("/accounts/login/", {"username": "maker", "password": "wrong"})
    failed = AuditEvent.objects.get(action="auth.sign_in_failed")
    assert failed.outcome == "denied"
    assert failed.actor_display == "maker"
    client.post("/accounts/login/", {"username": "maker", "password": "correct-horse-battery"})
    signed_in = AuditEvent.objects.get(action="auth.signed_in")
    assert signed_in.outcome == "success"
    assert signed_in.actor_id == maker.pk
    client.post("/accounts/logout/")
    assert AuditEvent.objects.filter(action="auth.signed_out", actor_id=maker.pk).count() == 1


def test_role_change_is_audited_and_narrows_tokens(approver, token_for):
    token_for(approver, ["read", "approve"])
    services.user_set_role(user=approver, role="maker", context=AuditContext.system())
    event = AuditEvent.objects.get(action="user.role_changed")
    assert event.before == {"role": "approver"}
    assert event.after == {"role": "maker"}
    assert ApiToken.objects.get(user=approver).scopes == ["read"]


def test_team_membership_changes_are_audited(maker, team):
    services.team_remove_member(team=team, user=maker, context=AuditContext.system())
    assert AuditEvent.objects.filter(action="team.member_removed", object_id=str(team.pk)).count() == 1
    assert not maker.teams.exists()


def test_disabling_ends_sessions_revokes_tokens_in_one_audited_step(client, maker, token_for, admin_user):
    client.post("/accounts/login/", {"username": "maker", "password": "correct-horse-battery"})
    assert client.get("/").status_code == 200
    token_for(maker)
    assert Session.objects.count() == 1

    services.user_disable(
        user=maker,
        context=AuditContext.for_user(
            admin_user, auth_method="session", request_id="r1", client_ip=None, user_agent=""
        ),
    )

    assert Session.objects.count() == 0
    assert client.get("/").status_code == 302  # back to sign-in
    assert not ApiToken.objects.filter(user=maker, revoked_at__isnull=True).exists()
    event = AuditEvent.objects.get(action="user.disabled")
    assert event.actor_id == admin_user.pk
    assert event.after["sessions_ended"] == 1
    assert event.after["tokens_revoked"] == 1


def test_rolled_back_change_leaves_no_success_event(maker):
    before = AuditEvent.objects.count()
    with pytest.raises(RuntimeError), transaction.atomic():
        services.user_set_role(user=maker, role="approver", context=AuditContext.system())
        raise RuntimeError("something later in the same transaction failed")
    maker.refresh_from_db()
    assert maker.role == "maker"
    assert AuditEvent.objects.count() == before


def test_seed_demo_is_idempotent_and_matches_design(capsys, settings, tmp_path):
    settings.DEMO_PASSWORD = "demo-password-for-tests"
    call_command("seed_demo")
    call_command("seed_demo")
    assert set(User.objects.values_list("username", "role")) == {
        ("admin", "admin"),
        ("maker", "maker"),
        ("approver", "approver"),
        ("approver2", "approver"),
        ("auditor", "auditor"),
        ("maker2", "maker"),
    }
    contoso = Team.objects.get(slug="contoso")
    assert set(contoso.members.values_list("username", flat=True)) == {"maker", "approver", "approver2"}
    assert set(Team.objects.get(slug="fabrikam").members.values_list("username", flat=True)) == {"maker2"}
    assert User.objects.get(username="admin").teams.count() == 0
    assert User.objects.get(username="maker").check_password("demo-password-for-tests")
    assert "demo-password-for-tests" in capsys.readouterr().out
    # The second run changed nothing, so it wrote no audit events of its own.
    assert AuditEvent.objects.filter(action="user.created").count() == 6


def test_seed_demo_is_refused_in_production(settings):
    from django.core.management.base import CommandError

    settings.PRODUCTION = True
    with pytest.raises(CommandError, match="refused in production"):
        call_command("seed_demo")
