"""The production CSP applies to every page, and no template needs inline script or style."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


@pytest.mark.django_db
def test_pages_carry_the_policy(api_world: Any) -> None:
    client = Client()
    client.force_login(api_world.users["approver"])
    for url in (reverse("home"), reverse("deployments:promotion-detail", args=[api_world.ids["promotion"]])):
        policy = client.get(url)["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert "Content-Security-Policy" in Client().get(reverse("accounts:login"))


def test_templates_have_no_inline_script_handlers_or_styles() -> None:
    for template in TEMPLATES.rglob("*.html"):
        text = template.read_text()
        if template.name == "500.html":
            assert "<script" not in text
        for tag in re.findall(r"<script\b[^>]*>", text):
            assert "src=" in tag, (template, tag)
        assert not re.search(r"\son[a-z]+\s*=", text), template
        assert not re.search(r"\sstyle\s*=", text), template


def test_htmx_runs_without_eval() -> None:
    base = (TEMPLATES / "base.html").read_text()
    assert '"allowEval": false' in base and '"includeIndicatorStyles": false' in base


@pytest.mark.django_db
def test_the_dashboard_partials_history_preview_and_metrics_pages_carry_the_policy(api_world: Any) -> None:
    client = Client()
    client.force_login(api_world.users["admin"])
    ids = api_world.ids
    urls = [
        reverse("deployments:running-jobs"),
        reverse("deployments:promotion-request-preview", args=[ids["version"]]) + f"?stage={ids['stage']}",
        reverse("deployments:promotion-request", args=[ids["version"]]),
        reverse("deployments:metrics"),
        reverse("deployments:pipeline-detail", args=[ids["pipeline"]]),
        reverse("environments:detail", args=[ids["environment"]]),
        reverse("solutions:solution-detail", args=[ids["solution"]]),
        reverse("solutions:solution-list"),
        reverse("solutions:version-detail", args=[ids["version"]]),
    ]
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, url
        policy = response["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "unsafe-eval" not in policy
        body = response.content.decode()
        for tag in re.findall(r"<script\b[^>]*>", body):
            assert "src=" in tag or 'type="application/json"' in tag, (url, tag)


def test_static_scripts_use_no_eval_or_inline_handlers() -> None:
    static = TEMPLATES.parent / "static" / "js"
    for script in static.rglob("*.js"):
        text = script.read_text()
        assert "eval(" not in text and "new Function" not in text and "innerHTML" not in text, script
