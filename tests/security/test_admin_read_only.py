"""Django's admin site changes nothing, and the demo does not serve it.

Its writes would bypass the services and the audit log: a superuser could add a Celery beat task with any
arguments, unaudited. Every model on the admin site is walked here, as a superuser, through the add, change
and delete views (GET and POST), and must answer 403; beat's periodic tasks are not on the site at all.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import reverse
from django_celery_beat.models import PeriodicTask

from alm_portal.readonly_admin import ReadOnlyAdmin

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db


@pytest.fixture
def superuser_client(make_user: Any) -> Client:
    from alm_portal.accounts.models import User

    user = make_user("root", "admin")
    User.objects.filter(pk=user.pk).update(is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(User.objects.get(pk=user.pk))
    return client


def test_every_model_on_the_admin_site_is_read_only() -> None:
    registered = admin.site._registry
    assert len(registered) > 15
    writable = sorted(
        model._meta.label for model, model_admin in registered.items() if not isinstance(model_admin, ReadOnlyAdmin)
    )
    assert writable == [], "admin pages that are not ReadOnlyAdmin"
    assert not any(model._meta.app_label == "django_celery_beat" for model in registered)
    assert not any(model._meta.label == "auth.Group" for model in registered)


def test_a_superuser_can_neither_add_nor_change_nor_delete_anything(superuser_client: Client, maker: Any) -> None:
    failures = []
    for model in admin.site._registry:
        meta = model._meta
        base = f"admin:{meta.app_label}_{meta.model_name}"
        changelist = superuser_client.get(reverse(f"{base}_changelist"))
        if changelist.status_code != 200:
            failures.append(f"{meta.label} list: {changelist.status_code}")
        for method in ("get", "post"):
            response = getattr(superuser_client, method)(reverse(f"{base}_add"))
            if response.status_code != 403:
                failures.append(f"{method.upper()} {meta.label} add: {response.status_code}")
    for view in ("change", "delete"):
        url = reverse(f"admin:accounts_user_{view}", args=[maker.pk])
        response = superuser_client.post(url, {"username": "renamed", "role": "admin", "post": "yes"})
        if response.status_code != 403:
            failures.append(f"POST user {view}: {response.status_code}")
    maker.refresh_from_db()
    assert failures == []
    assert (maker.username, maker.role, maker.is_active) == ("maker", "maker", True)


def test_beats_periodic_tasks_cannot_be_added_through_the_admin(superuser_client: Client) -> None:
    before = PeriodicTask.objects.count()

    response = superuser_client.post(
        "/admin/django_celery_beat/periodictask/add/",
        {"name": "x", "task": "deployments.dispatch_jobs", "args": "[]", "kwargs": "{}", "enabled": "on"},
    )

    assert response.status_code == 404
    assert PeriodicTask.objects.count() == before


def test_the_demo_does_not_serve_the_admin_site(tmp_path: Path) -> None:
    """`make run` sets ALM_DJANGO_ADMIN=false: the demo's people are not staff, and the site would only
    refuse them."""
    assert "ALM_DJANGO_ADMIN=false" in (ROOT / "Makefile").read_text()
    env = {key: value for key, value in os.environ.items() if not key.startswith("ALM_")}
    env.update(
        {
            "ALM_VAR_DIR": str(tmp_path / "var"),
            "ALM_DJANGO_ADMIN": "false",
            "DJANGO_SETTINGS_MODULE": "alm_portal.settings",
        }
    )
    env.pop("DATABASE_URL", None)
    code = (
        "import django; django.setup()\n"
        "from django.urls import Resolver404, resolve\n"
        "try:\n    resolve('/admin/')\nexcept Resolver404:\n    print('not served')\n"
    )
    shown = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert shown.stdout.strip() == "not served", shown.stderr
