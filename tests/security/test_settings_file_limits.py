"""A deployment settings file (the `pac solution create-settings` JSON) within the 1 MiB limit but nested a
hundred thousand levels deep is refused with a message, like any other malformed file, not with a 500."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_a_deeply_nested_settings_file_is_refused_with_a_message(api_world: Any) -> None:
    client = Client(raise_request_exception=False)
    client.force_login(api_world.users["admin"])
    stage_id = api_world.ids["stage_prod"]
    nested = SimpleUploadedFile("settings.json", b"[" * 200_000, content_type="application/json")
    response = client.post(reverse("deployments:stage-settings-import", args=[stage_id]), {"file": nested, "etag": ""})
    assert response.status_code == 200
    assert "The settings file nests too deeply." in response.content.decode()
