"""The registry's pages: list, detail with history, version with manifest, diff, upload and export."""

from __future__ import annotations

import pytest
from django.urls import reverse

from alm_portal.jobs.models import Job
from environments.models import Environment
from solutions.models import Solution, SolutionVersion
from tests.solutions.conftest import (
    INCIDENT_102_UNMANAGED,
    INCIDENT_104_UNMANAGED,
    corpus_bytes,
    upload_file,
)

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.solutions.urls")]


@pytest.fixture
def incident(maker, upload):
    upload(maker, INCIDENT_102_UNMANAGED)
    upload(maker, INCIDENT_104_UNMANAGED)
    return Solution.objects.get(unique_name="IncidentReporting")


def _pages(solution):
    old, new = SolutionVersion.objects.filter(solution=solution).order_by("revision")
    return [
        reverse("solutions:solution-list"),
        reverse("solutions:solution-detail", args=[solution.pk]),
        reverse("solutions:version-detail", args=[new.pk]),
        reverse("solutions:version-diff", args=[new.pk, old.pk]),
    ]


def test_maker_sees_list_detail_version_and_diff(client, maker, incident):
    client.force_login(maker)
    listing, detail, version, diff = (client.get(url) for url in _pages(incident))

    assert listing.status_code == 200 and b"IncidentReporting" in listing.content
    assert detail.status_code == 200 and b"1.0.0.4" in detail.content and b"1.0.0.2" in detail.content
    assert version.status_code == 200 and b"Manifest" in version.content and b"download" in version.content.lower()
    assert diff.status_code == 200 and b"Data loss on upgrade" in diff.content


def test_compare_form_redirects_to_the_diff(client, maker, incident):
    client.force_login(maker)
    old, new = SolutionVersion.objects.filter(solution=incident).order_by("revision")

    response = client.get(reverse("solutions:version-compare", args=[new.pk]), {"against": old.pk})

    assert response.status_code == 302
    assert response["Location"] == reverse("solutions:version-diff", args=[new.pk, old.pk])


def test_pages_of_other_teams_are_404(client, outsider, incident):
    client.force_login(outsider)
    listing, *others = (client.get(url) for url in _pages(incident))
    assert listing.status_code == 200 and b"IncidentReporting" not in listing.content
    assert [response.status_code for response in others] == [404, 404, 404]


def test_anonymous_is_sent_to_sign_in(client, incident):
    for url in [*_pages(incident), reverse("solutions:version-upload")]:
        response = client.get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_upload_page_registers_a_version(client, maker):
    client.force_login(maker)
    assert client.get(reverse("solutions:version-upload")).status_code == 200

    response = client.post(
        reverse("solutions:version-upload"),
        {"file": upload_file(corpus_bytes(INCIDENT_102_UNMANAGED), "IncidentReporting.zip"), "release_notes": "x"},
    )

    version = SolutionVersion.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("solutions:version-detail", args=[version.pk])
    assert version.release_notes == "x"


def test_upload_page_shows_the_package_readers_message(client, maker):
    client.force_login(maker)

    response = client.post(reverse("solutions:version-upload"), {"file": upload_file(b"not a zip", "x.zip")})

    assert response.status_code == 200
    assert b"zip" in response.content and not SolutionVersion.objects.exists()


def test_auditor_cannot_upload_or_export(client, auditor, incident):
    client.force_login(auditor)
    assert client.get(reverse("solutions:version-upload")).status_code == 403
    assert (
        client.post(reverse("solutions:solution-export", args=[incident.pk]), {"bump": "revision"}).status_code == 403
    )
    assert b"Export from" not in client.get(reverse("solutions:solution-detail", args=[incident.pk])).content


def test_export_button_queues_a_job(client, maker, incident, team):
    home = Environment.objects.create(name="contoso-dev", url="https://d.crm.dynamics.com", tenant_id="t", team=team)
    Solution.objects.filter(pk=incident.pk).update(home_environment=home)
    client.force_login(maker)
    detail = reverse("solutions:solution-detail", args=[incident.pk])
    assert b"Export from contoso-dev" in client.get(detail).content

    response = client.post(reverse("solutions:solution-export", args=[incident.pk]), {"bump": "build"})

    assert response.status_code == 302 and response["Location"] == detail
    assert Job.objects.get(kind="export").params["bump"] == "build"


def test_outsider_cannot_export(client, outsider, incident):
    client.force_login(outsider)
    response = client.post(reverse("solutions:solution-export", args=[incident.pk]), {"bump": "revision"})
    assert response.status_code == 404
    assert not Job.objects.exists()
