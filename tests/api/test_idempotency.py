"""Idempotency-Key on API POSTs: the first response again for a retry, never a second effect."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.utils import timezone

from alm_portal.idempotency.models import IdempotencyRecord
from deployments.models import Promotion
from tests.support.api import corpus_file

pytestmark = pytest.mark.django_db


def _promotion_body(world, **extra):
    return {
        "version": world.ids["version"],
        "stage": world.ids["stage"],
        "justification": "Release to test",
        **extra,
    }


@pytest.fixture
def fresh_request(api_world):
    """The world's own promotion is cancelled, so a new one may be requested."""
    maker = api_world.client("maker")
    cancelled = maker.post(f"/api/v1/promotions/{api_world.ids['promotion']}/cancel/", {"comment": "redo"})
    assert cancelled.status_code == 200
    return api_world


def test_a_retry_with_the_same_key_and_body_answers_the_first_response_without_a_second_promotion(fresh_request):
    maker = fresh_request.client("maker")
    first = maker.post("/api/v1/promotions/", _promotion_body(fresh_request), format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    again = maker.post("/api/v1/promotions/", _promotion_body(fresh_request), format="json", HTTP_IDEMPOTENCY_KEY="k-1")

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again["Location"] == first["Location"]
    assert again["Idempotent-Replayed"] == "true" and not first.has_header("Idempotent-Replayed")
    assert Promotion.objects.filter(status="pending_approval").count() == 1


def test_key_order_of_the_json_body_does_not_matter(fresh_request):
    maker = fresh_request.client("maker")
    body = _promotion_body(fresh_request)
    maker.post("/api/v1/promotions/", body, format="json", HTTP_IDEMPOTENCY_KEY="k-order")
    reordered = dict(reversed(list(body.items())))
    again = maker.post("/api/v1/promotions/", reordered, format="json", HTTP_IDEMPOTENCY_KEY="k-order")
    assert again.status_code == 201 and again["Idempotent-Replayed"] == "true"


def test_the_same_key_with_another_body_is_refused(fresh_request):
    maker = fresh_request.client("maker")
    maker.post("/api/v1/promotions/", _promotion_body(fresh_request), format="json", HTTP_IDEMPOTENCY_KEY="k-2")
    other = maker.post(
        "/api/v1/promotions/",
        _promotion_body(fresh_request, justification="Something else"),
        format="json",
        HTTP_IDEMPOTENCY_KEY="k-2",
    )
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_key_reused"


def test_a_duplicate_while_the_first_is_in_flight_is_refused(fresh_request):
    maker = fresh_request.client("maker")
    first = maker.post(
        "/api/v1/promotions/",
        _promotion_body(fresh_request),
        format="json",
        HTTP_IDEMPOTENCY_KEY="k-flight",
    )
    record = IdempotencyRecord.objects.get(key="k-flight")
    IdempotencyRecord.objects.filter(pk=record.pk).update(state="in_flight", status_code=None)

    duplicate = maker.post(
        "/api/v1/promotions/", _promotion_body(fresh_request), format="json", HTTP_IDEMPOTENCY_KEY="k-flight"
    )
    assert first.status_code == 201
    assert duplicate.status_code == 409
    assert duplicate.json()["error"]["code"] == "idempotency_in_progress"


def test_an_abandoned_claim_and_an_expired_key_do_not_block_for_ever(fresh_request):
    maker = fresh_request.client("maker")
    body = {"comment": "x"}
    url = f"/api/v1/promotions/{fresh_request.ids['promotion']}/retry/"
    maker.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="k-old")
    IdempotencyRecord.objects.filter(key="k-old").update(
        state="in_flight", created_at=timezone.now() - timedelta(hours=1)
    )
    taken_over = maker.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="k-old")
    assert taken_over.status_code == 409 and not taken_over.has_header("Idempotent-Replayed")  # it ran again
    IdempotencyRecord.objects.filter(key="k-old").update(expires_at=timezone.now() - timedelta(seconds=1))
    again = maker.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="k-old")
    assert not again.has_header("Idempotent-Replayed")


def test_keys_are_scoped_per_caller_and_path(fresh_request):
    from alm_portal.accounts import services
    from alm_portal.audit.context import AuditContext

    _, second_token = services.api_token_create(
        user=fresh_request.users["maker"], scopes=["read", "request"], name="second", context=AuditContext.system()
    )
    maker = fresh_request.client("maker")
    same_person_other_token = fresh_request.client("anonymous")
    same_person_other_token.credentials(HTTP_AUTHORIZATION=f"Bearer {second_token}")

    first = maker.post("/api/v1/promotions/", _promotion_body(fresh_request), format="json", HTTP_IDEMPOTENCY_KEY="k")
    other = same_person_other_token.post(
        "/api/v1/promotions/", _promotion_body(fresh_request), format="json", HTTP_IDEMPOTENCY_KEY="k"
    )
    assert first.status_code == 201
    assert not other.has_header("Idempotent-Replayed")  # ran (and was refused by the workflow or not) itself
    elsewhere = maker.post(
        f"/api/v1/promotions/{fresh_request.ids['promotion']}/retry/", {}, format="json", HTTP_IDEMPOTENCY_KEY="k"
    )
    assert elsewhere.status_code == 409 and elsewhere.json()["error"]["code"] == "invalid_state"


def test_server_errors_and_refused_credentials_are_not_kept(fresh_request, monkeypatch):
    maker = fresh_request.client("maker")
    maker.raise_request_exception = False

    def boom(**kwargs):
        raise RuntimeError("database fell over")

    monkeypatch.setattr("deployments.workflow.promotion_request", boom)
    failed = maker.post("/api/v1/promotions/", _promotion_body(fresh_request), format="json", HTTP_IDEMPOTENCY_KEY="k5")
    assert failed.status_code == 500
    assert not IdempotencyRecord.objects.filter(key="k5").exists()
    monkeypatch.undo()

    retried = maker.post(
        "/api/v1/promotions/", _promotion_body(fresh_request), format="json", HTTP_IDEMPOTENCY_KEY="k5"
    )
    assert retried.status_code == 201 and not retried.has_header("Idempotent-Replayed")

    readonly = fresh_request.client("readonly")
    refused = readonly.post("/api/v1/pipelines/", {}, format="json", HTTP_IDEMPOTENCY_KEY="k6")
    assert refused.status_code == 403
    assert not IdempotencyRecord.objects.filter(key="k6").exists()


def test_a_malformed_key_is_a_validation_error(api_world):
    response = api_world.client("maker").post("/api/v1/tokens/", {}, format="json", HTTP_IDEMPOTENCY_KEY="has space")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error" and list(error["details"]) == ["Idempotency-Key"]


def test_multipart_uploads_are_fingerprinted_by_the_file_digest(api_world):
    maker = api_world.client("maker")

    def upload(name, key, notes="n"):
        return maker.post(
            "/api/v1/versions/", {"file": corpus_file(name), "release_notes": notes}, HTTP_IDEMPOTENCY_KEY=key
        )

    first = upload("Success_1_1_0_0_managed.zip", "u-1")
    again = upload("Success_1_1_0_0_managed.zip", "u-1")
    assert first.status_code == again.status_code == 200  # identical bytes were stored by the world already
    assert again["Idempotent-Replayed"] == "true"
    other_file = upload("Success_1_0_0_0_managed.zip", "u-1")
    assert other_file.json()["error"]["code"] == "idempotency_key_reused"
    other_notes = upload("Success_1_1_0_0_managed.zip", "u-1", notes="changed")
    assert other_notes.json()["error"]["code"] == "idempotency_key_reused"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_requests_with_one_key_at_the_same_instant_run_once(api_world, monkeypatch):
    """The first holds the claim while the workflow runs; the second is told it is in progress."""
    from deployments import workflow

    maker_token = api_world.tokens["maker"]
    cancel = api_world.client("maker").post(
        f"/api/v1/promotions/{api_world.ids['promotion']}/cancel/", {"comment": "redo"}, format="json"
    )
    assert cancel.status_code == 200
    entered, release = threading.Event(), threading.Event()
    real = workflow.promotion_request

    def slow(**kwargs):
        entered.set()
        release.wait(10)
        return real(**kwargs)

    monkeypatch.setattr("deployments.workflow.promotion_request", slow)
    results = {}

    def first():
        from django.db import connection
        from rest_framework.test import APIClient

        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {maker_token}")
        results["first"] = client.post(
            "/api/v1/promotions/", _promotion_body(api_world), format="json", HTTP_IDEMPOTENCY_KEY="same"
        )
        connection.close()

    thread = threading.Thread(target=first)
    thread.start()
    assert entered.wait(10)
    second = api_world.client("maker").post(
        "/api/v1/promotions/", _promotion_body(api_world), format="json", HTTP_IDEMPOTENCY_KEY="same"
    )
    release.set()
    thread.join(20)
    assert second.status_code == 409 and second.json()["error"]["code"] == "idempotency_in_progress"
    assert results["first"].status_code == 201
    assert Promotion.objects.filter(status="pending_approval").count() == 1
