"""API tokens: stored as keyed digests, scoped, expiring, revocable, header-only."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from alm_portal.accounts import services
from alm_portal.accounts.models import ApiToken
from alm_portal.audit.context import AuditContext
from alm_portal.audit.models import AuditEvent

pytestmark = pytest.mark.django_db

ME = "/api/v1/me/"


def _bearer(text: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {text}"}


def test_token_text_is_id_and_256_bit_secret(maker, token_for):
    text = token_for(maker)
    prefix, token_id, secret = text.split("_", 2)
    assert prefix == "alm"
    assert ApiToken.objects.filter(pk=int(token_id), user=maker).exists()
    assert len(secret) == 43  # 32 random bytes, base64url without padding


def test_nothing_usable_is_stored(maker, token_for):
    text = token_for(maker)
    secret = text.split("_", 2)[2]
    # Search every text column of every table for the secret (or the whole token).
    hits = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            description = connection.introspection.get_table_description(cursor, table)
            for column in description:
                cursor.execute(
                    f'SELECT COUNT(*) FROM "{table}" WHERE CAST("{column.name}" AS TEXT) LIKE %s',
                    [f"%{secret}%"],
                )
                if cursor.fetchone()[0]:
                    hits.append(f"{table}.{column.name}")
    assert hits == []


def test_valid_token_authenticates(api_client, maker, token_for):
    response = api_client.get(ME, **_bearer(token_for(maker, ["read", "request"])))
    assert response.status_code == 200
    assert response.json()["username"] == "maker"
    assert response.json()["scopes"] == ["read", "request"]


def test_anonymous_gets_401_with_www_authenticate(api_client):
    response = api_client.get(ME)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["error"]["code"] == "not_authenticated"


def test_wrong_secret_is_refused(api_client, maker, token_for):
    text = token_for(maker)
    forged = text[:-4] + ("AAAA" if not text.endswith("AAAA") else "BBBB")
    response = api_client.get(ME, **_bearer(forged))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_expired_token_is_refused_with_token_expired(api_client, maker, token_for):
    text = token_for(maker)
    ApiToken.objects.filter(user=maker).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = api_client.get(ME, **_bearer(text))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_expired"


def test_revoked_token_is_refused_with_token_revoked(api_client, maker, token_for):
    text = token_for(maker)
    token = ApiToken.objects.get(user=maker)
    services.api_token_revoke(token=token, context=AuditContext.system())
    response = api_client.get(ME, **_bearer(text))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_revoked"
    assert AuditEvent.objects.filter(action="api_token.revoked", object_id=str(token.pk)).count() == 1


def test_token_in_query_string_is_refused(api_client, maker, token_for):
    text = token_for(maker)
    response = api_client.get(f"{ME}?access_token={text}")
    assert response.status_code == 401
    assert "query string" in response.json()["error"]["message"]


def test_scope_beyond_role_is_refused(maker):
    with pytest.raises(services.ScopeNotAllowed) as refusal:
        services.api_token_create(user=maker, scopes=["read", "approve"], context=AuditContext.system())
    assert refusal.value.code == "scope_not_allowed"
    assert refusal.value.details["scopes"] == ["approve"]
    assert not ApiToken.objects.filter(user=maker).exists()


def test_auditor_can_only_read(auditor):
    with pytest.raises(services.ScopeNotAllowed):
        services.api_token_create(user=auditor, scopes=["request"], context=AuditContext.system())
    token, _ = services.api_token_create(user=auditor, scopes=["read"], context=AuditContext.system())
    assert token.scopes == ["read"]


@pytest.mark.parametrize("days", [0, 91, -1])
def test_expiry_outside_1_to_90_days_is_refused(maker, days):
    with pytest.raises(services.ValidationFailed) as refusal:
        services.api_token_create(user=maker, scopes=["read"], days=days, context=AuditContext.system())
    assert "days" in refusal.value.details


def test_default_is_read_for_30_days(maker):
    token, _ = services.api_token_create(user=maker, scopes=[], context=AuditContext.system())
    assert token.scopes == ["read"]
    assert token.name.startswith("cli-")
    assert timedelta(days=29, hours=23) < token.expires_at - timezone.now() <= timedelta(days=30)


def test_read_scope_token_cannot_create_broader_token(api_client, maker, token_for):
    response = api_client.post(
        "/api/v1/tokens/", {"name": "ci", "scopes": ["read", "request"]}, format="json", **_bearer(token_for(maker))
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "scope_not_allowed"


def test_create_token_through_api_shows_it_once(api_client, maker, token_for):
    auth = _bearer(token_for(maker, ["read", "request"]))
    created = api_client.post(
        "/api/v1/tokens/", {"name": "pipeline", "scopes": ["read"], "days": 7}, format="json", **auth
    )
    assert created.status_code == 201
    assert created.json()["token"].startswith("alm_")
    listed = api_client.get("/api/v1/tokens/", **auth).json()
    assert all("token" not in row and "digest" not in row for row in listed)
    assert {row["name"] for row in listed} == {"pipeline", *[t.name for t in ApiToken.objects.filter(user=maker)]}


def test_scope_insufficient_when_role_allows_but_token_lacks(api_client, maker, token_for, settings):
    # The token list needs only read; a token-less POST on an admin view is covered by later issues.
    from alm_portal.accounts.permissions import ScopedRolePermission

    class AdminOnly:
        required_scopes = {"GET": "request"}

    class FakeRequest:
        method = "GET"
        user = maker
        auth = services.api_token_authenticate(token_for(maker, ["read"]))

    from rest_framework.exceptions import PermissionDenied

    with pytest.raises(PermissionDenied) as refusal:
        ScopedRolePermission().has_permission(FakeRequest(), AdminOnly())
    assert refusal.value.get_codes() == "scope_insufficient"


def test_disabled_user_token_stops_working(api_client, maker, token_for):
    text = token_for(maker)
    services.user_disable(user=maker, context=AuditContext.system())
    response = api_client.get(ME, **_bearer(text))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_revoked"


def test_last_used_is_written_at_most_once_a_minute(api_client, maker, token_for):
    text = token_for(maker)
    api_client.get(ME, **_bearer(text))
    first = ApiToken.objects.get(user=maker).last_used_at
    assert first is not None
    api_client.get(ME, **_bearer(text))
    assert ApiToken.objects.get(user=maker).last_used_at == first
    ApiToken.objects.filter(user=maker).update(last_used_at=first - timedelta(minutes=2))
    api_client.get(ME, **_bearer(text))
    assert ApiToken.objects.get(user=maker).last_used_at > first - timedelta(minutes=2)


def test_denied_token_attempt_is_audited_once(api_client, maker, token_for):
    # Refused credentials are counted per client and window and audited once the window ends (finding 7).
    from alm_portal.audit.denials import denied_requests_flush

    text = token_for(maker)
    before = AuditEvent.objects.filter(outcome="denied").count()
    api_client.get(ME, **_bearer(text[:-2] + "zz"))
    assert denied_requests_flush(now=timezone.now() + timedelta(hours=1)) == 1
    assert AuditEvent.objects.filter(outcome="denied").count() == before + 1
    event = AuditEvent.objects.get(action="api.denied.unauthenticated")
    assert event.after["count"] == 1 and event.after["codes"] == {"not_authenticated": 1}


def test_token_creation_is_audited_without_the_secret(maker, token_for):
    text = token_for(maker)
    event = AuditEvent.objects.get(action="api_token.created")
    assert text.split("_", 2)[2] not in str(event.after)
    assert event.after["scopes"] == ["read"]


class TestCreateApiTokenCommand:
    def test_prints_token_alone_on_last_line(self, maker, capsys):
        call_command("create_api_token", "maker", "--scope", "read", "--scope", "request", "--days", "7")
        last = capsys.readouterr().out.strip().splitlines()[-1]
        assert last.startswith("alm_")
        token = services.api_token_authenticate(last)
        assert token.scopes == ["read", "request"]

    @pytest.mark.parametrize(
        ("args", "fragment"),
        [
            (["nobody"], "No user named"),
            (["maker", "--scope", "admin"], "does not allow"),
            (["maker", "--days", "91"], "between 1 and 90"),
        ],
    )
    def test_refusals_exit_2_with_one_line(self, maker, capsys, args, fragment):
        with pytest.raises(SystemExit) as exit_info:
            call_command("create_api_token", *args)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1
        assert fragment in err
