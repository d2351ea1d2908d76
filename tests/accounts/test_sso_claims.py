"""How id_token claims become a role and teams (ALM_SSO_ROLE_MAP, ALM_SSO_GROUP_TEAM_MAP), without the
HTTP flow: groups arrive as object ids in the `groups` claim, which the emulator does not send."""

from __future__ import annotations

from typing import Any

import pytest

from alm_portal.accounts import services, sso
from alm_portal.accounts.models import User
from alm_portal.audit.context import AuditContext
from alm_portal.audit.models import AuditEvent

pytestmark = pytest.mark.django_db
MAKERS_GROUP = "6f1c0b0e-0000-4000-8000-00000000aa01"
FABRIKAM_GROUP = "6f1c0b0e-0000-4000-8000-00000000aa02"
ADMINS_GROUP = "6f1c0b0e-0000-4000-8000-00000000aa03"


@pytest.fixture
def group_maps(settings: Any, team: Any) -> Any:
    services.team_create(name="Fabrikam", slug="fabrikam", context=AuditContext.system())
    settings.ALM_SSO_ROLE_MAP = {MAKERS_GROUP: "maker", FABRIKAM_GROUP: "maker", ADMINS_GROUP: "admin"}
    settings.ALM_SSO_GROUP_TEAM_MAP = {MAKERS_GROUP: "contoso", FABRIKAM_GROUP: "fabrikam"}
    return settings


def _claims(*groups: str, oid: str = "0b000000-0000-4000-8000-000000000001") -> dict[str, Any]:
    return {
        "tid": "5b0b0d7e-2f43-4c1e-9a4e-0d3e7c2a9f10",
        "oid": oid,
        "preferred_username": "mia@contoso.example",
        "name": "Mia",
        "groups": list(groups),
    }


def _sign_in(claims: dict[str, Any]) -> User:
    return sso.user_from_claims(claims=claims, context=AuditContext.system())


def test_the_most_powerful_mapped_role_wins(settings: Any) -> None:
    assert sso.role_for({"roles": ["ALM.Auditor", "ALM.Maker", "ALM.Approver"]}) == "approver"
    assert sso.role_for({"roles": ["ALM.Admin", "ALM.Auditor"]}) == "admin"
    assert sso.role_for({"roles": ["Something.Else"], "groups": []}) is None
    assert sso.role_for({"roles": "ALM.Admin"}) is None  # a claim that is not a list grants nothing


def test_groups_give_role_and_teams(group_maps: Any) -> None:
    user = _sign_in(_claims(MAKERS_GROUP, FABRIKAM_GROUP))
    assert user.role == "maker"
    assert set(user.teams.values_list("slug", flat=True)) == {"contoso", "fabrikam"}


def test_leaving_a_group_leaves_the_team_but_not_unmapped_ones(group_maps: Any) -> None:
    user = _sign_in(_claims(MAKERS_GROUP, FABRIKAM_GROUP))
    local = services.team_create(name="Local", slug="local", context=AuditContext.system())
    services.team_add_member(team=local, user=user, context=AuditContext.system())

    user = _sign_in(_claims(MAKERS_GROUP, ADMINS_GROUP))

    assert user.role == "admin"
    assert set(user.teams.values_list("slug", flat=True)) == {"contoso", "local"}
    removed = AuditEvent.objects.get(action="team.member_removed")
    assert removed.object_repr == "Fabrikam" and removed.related_id == str(user.pk)


def test_no_mapped_group_disables_the_account(group_maps: Any) -> None:
    user = _sign_in(_claims(MAKERS_GROUP))
    with pytest.raises(sso.SignInRefused, match="no ALM Portal app role"):
        _sign_in(_claims("some-other-group"))
    user.refresh_from_db()
    assert not user.is_active
    assert AuditEvent.objects.filter(action="user.disabled", object_id=str(user.pk)).count() == 1


def test_a_groups_overage_is_refused_without_disabling_or_touching_teams(group_maps: Any) -> None:
    user = _sign_in(_claims(MAKERS_GROUP))
    overage = {**_claims(), "_claim_names": {"groups": "src1"}, "_claim_sources": {"src1": {"endpoint": "x"}}}
    del overage["groups"]
    with pytest.raises(sso.SignInRefused, match="did not list your groups"):
        _sign_in(overage)
    user.refresh_from_db()
    assert user.is_active and list(user.teams.values_list("slug", flat=True)) == ["contoso"]
    assert AuditEvent.objects.get(action="auth.sso_refused").message == "groups overage"


def test_an_overage_with_an_app_role_signs_in_and_keeps_teams(group_maps: Any) -> None:
    group_maps.ALM_SSO_ROLE_MAP = {**group_maps.ALM_SSO_ROLE_MAP, "ALM.Approver": "approver"}
    _sign_in(_claims(MAKERS_GROUP))
    user = _sign_in({**_claims(), "groups": None, "hasgroups": True, "roles": ["ALM.Approver"]})
    assert user.role == "approver" and list(user.teams.values_list("slug", flat=True)) == ["contoso"]
