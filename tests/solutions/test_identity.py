"""A solution's publisher and display name come from its packages (issue 13, item 11).

Registration by name cannot know them; the first package stored fills them (upload and export alike,
both through artifact_register), and solutions_fill_identity (migration solutions 0004) fills the ones
stored before, from their oldest version's manifest. Each fill is audited; names a person gave stay.
"""

from __future__ import annotations

import pytest

from alm_portal.audit.models import AuditEvent
from solutions import services
from solutions.models import Solution
from tests.solutions.conftest import INCIDENT_102_UNMANAGED, INCIDENT_104_UNMANAGED

pytestmark = pytest.mark.django_db


def _register(team, maker, context_of, **kwargs):
    return services.solution_register(
        unique_name="IncidentReporting", team=team, user=maker, context=context_of(maker), **kwargs
    )


def test_the_first_package_fills_what_registration_by_name_left_empty(maker, team, upload, context_of):
    solution = _register(team, maker, context_of)
    assert (solution.publisher_unique_name, solution.display_name) == ("", "IncidentReporting")

    upload(maker, INCIDENT_102_UNMANAGED, solution=solution)

    solution.refresh_from_db()
    assert (solution.publisher_unique_name, solution.publisher_prefix) == ("Shaheer", "sa")
    assert solution.display_name == "Incident Reporting"
    (event,) = AuditEvent.objects.filter(action="solution.identity_filled")
    assert event.before == {"publisher_unique_name": "", "publisher_prefix": "", "display_name": "IncidentReporting"}
    assert event.after["from_version"] == "1.0.0.2"

    upload(maker, INCIDENT_104_UNMANAGED, solution=solution)  # nothing left to fill: no second event
    assert AuditEvent.objects.filter(action="solution.identity_filled").count() == 1


def test_a_display_name_a_person_gave_is_kept(maker, team, upload, context_of):
    solution = _register(team, maker, context_of, display_name="Incidents (Contoso)")
    upload(maker, INCIDENT_102_UNMANAGED, solution=solution)
    solution.refresh_from_db()
    assert solution.display_name == "Incidents (Contoso)" and solution.publisher_unique_name == "Shaheer"


def test_solutions_stored_before_are_filled_from_their_oldest_version(maker, team, upload, context_of):
    solution = _register(team, maker, context_of)
    upload(maker, INCIDENT_104_UNMANAGED, solution=solution)
    upload(maker, INCIDENT_102_UNMANAGED, solution=solution)
    # As the export path left them before it filled anything:
    Solution.objects.filter(pk=solution.pk).update(
        publisher_unique_name="", publisher_prefix="", display_name="IncidentReporting"
    )

    assert services.solutions_fill_identity(context=context_of(maker)) == [solution.pk]
    solution.refresh_from_db()
    assert (solution.publisher_unique_name, solution.display_name) == ("Shaheer", "Incident Reporting")
    assert AuditEvent.objects.filter(action="solution.identity_filled").last().after["from_version"] == "1.0.0.2"
    assert services.solutions_fill_identity(context=context_of(maker)) == []  # safe to run again
