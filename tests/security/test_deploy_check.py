"""`manage.py check --deploy --fail-level WARNING` with production settings finds nothing."""

from __future__ import annotations

from pathlib import Path

from tests.security.production import production_run

DEPLOY_CHECK = ["manage.py", "check", "--deploy", "--fail-level", "WARNING"]


def test_production_settings_pass_the_deploy_check_without_findings(tmp_path: Path) -> None:
    result = production_run(DEPLOY_CHECK, tmp_path)

    assert result.returncode == 0, result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_the_deploy_check_would_catch_a_weakened_setting(tmp_path: Path) -> None:
    result = production_run(DEPLOY_CHECK, tmp_path, SECURE_HSTS_INCLUDE_SUBDOMAINS="false", SECURE_SSL_REDIRECT="false")

    assert result.returncode != 0
    assert "security.W005" in result.stderr and "security.W008" in result.stderr
