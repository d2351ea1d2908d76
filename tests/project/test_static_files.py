"""Static files are collected with the storage production uses: whitenoise's manifest storage refuses a
file that references one that is missing (a vendored bundle's source map, a CSS url()), and the container
image collects static files before it starts. Outside production, static/ is served by its own names."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.test import override_settings


def test_collectstatic_succeeds_with_the_production_manifest_storage(tmp_path: Path) -> None:
    storages = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    }
    with override_settings(STATIC_ROOT=str(tmp_path), STORAGES=storages):
        call_command("collectstatic", interactive=False, verbosity=0)

    manifest = (tmp_path / "staticfiles.json").read_text()
    assert "vendor/chartjs/chart.umd.min.js" in manifest
    assert "css/portal.css" in manifest
