"""Settings: strict environment variables, one-line failures, the Celery contract."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from celery.app.defaults import NAMESPACES, flatten
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]


def _django_check(env_overrides: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ALM_", "DATABASE_URL", "SECRET"))}
    env.update({"ALM_VAR_DIR": str(tmp_path / "var"), "DJANGO_SETTINGS_MODULE": "alm_portal.settings"})
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


PRODUCTION_OK = {
    "ALM_MODE": "production",
    "SECRET_KEY": "x" * 50,
    "ALM_ENCRYPTION_KEY": "bXVzdC1iZS0zMi11cmwtc2FmZS1iYXNlNjQtYnl0ZXM=",
    "ALM_TOKEN_PEPPER": "pepper",
    "ALM_AUDIT_CHECKPOINT_KEY": "checkpoint",
    "ALLOWED_HOSTS": "alm.example.com",
    "ALM_ALLOW_LOOPBACK": "false",
}


def test_production_with_everything_set_starts(tmp_path):
    result = _django_check(PRODUCTION_OK, tmp_path)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("change", "variable"),
    [
        ({"SECRET_KEY": ""}, "SECRET_KEY"),
        ({"ALM_ENCRYPTION_KEY": ""}, "ALM_ENCRYPTION_KEY"),
        ({"ALM_ENCRYPTION_KEY": "not-a-fernet-key"}, "ALM_ENCRYPTION_KEY"),
        ({"ALLOWED_HOSTS": ""}, "ALLOWED_HOSTS"),
        ({"ALM_ALLOW_LOOPBACK": "maybe"}, "ALM_ALLOW_LOOPBACK"),
        ({"ALM_ALLOW_LOOPBACK": "true"}, "ALM_ALLOW_LOOPBACK"),
        ({"DATABASE_URL": "mysql://x@y/z"}, "DATABASE_URL"),
        ({"ALM_VISIBILITY_TIMEOUT": "two hours"}, "ALM_VISIBILITY_TIMEOUT"),
        ({"ALM_MODE": "prod"}, "ALM_MODE"),
        ({"DEBUG": "true"}, "DEBUG"),
    ],
)
def test_bad_configuration_stops_start_up_with_one_line_naming_the_variable(tmp_path, change, variable):
    result = _django_check(PRODUCTION_OK | change, tmp_path)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"configuration error: {variable}:")


def test_development_generates_secrets_once_into_var(tmp_path):
    env = {"ALM_MODE": "development"}
    assert _django_check(env, tmp_path).returncode == 0
    secret_file = tmp_path / "var" / "secrets" / "secret_key"
    first = secret_file.read_text()
    assert _django_check(env, tmp_path).returncode == 0
    assert secret_file.read_text() == first
    assert oct(secret_file.stat().st_mode & 0o777) == "0o600"


def test_every_celery_setting_we_set_is_a_real_celery_setting():
    known = {name.lower() for name, _ in flatten(NAMESPACES)}
    ours = [name for name in dir(settings) if name.startswith("CELERY_")]
    assert ours, "no Celery settings found"
    unknown = [name for name in ours if name.removeprefix("CELERY_").lower() not in known]
    assert unknown == []


def test_documented_defaults():
    assert settings.ALM_MAX_UPLOAD_BYTES == 500 * 1024 * 1024
    assert settings.ALM_APPROVAL_TTL_DAYS == 30
    assert settings.ALM_CREDENTIAL_WARNING_DAYS == [30, 7]
    assert settings.ALM_VISIBILITY_TIMEOUT == 7200


def test_celery_contract():
    assert settings.CELERY_WORKER_PREFETCH_MULTIPLIER == 1
    assert settings.CELERY_TASK_ACKS_LATE is False  # only idempotent tasks opt in
    assert settings.CELERY_TASK_REJECT_ON_WORKER_LOST is True
    assert settings.CELERY_TASK_IGNORE_RESULT is True
    assert settings.CELERY_TASK_PUBLISH_RETRY is False
    if settings.REDIS_URL:
        assert settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] == settings.ALM_VISIBILITY_TIMEOUT


def test_every_task_time_limit_is_below_a_quarter_of_the_visibility_timeout():
    from alm_portal.celery import app, check_time_limits

    assert check_time_limits(settings) == []
    # The check saw every task of the project, not only those some earlier test happened to import.
    assert {"notifications.dispatch", "deployments.run_job", "audit.verify"} <= set(app.tasks)


def test_a_task_whose_soft_limit_is_above_its_own_limit_is_reported(settings):
    from alm_portal.celery import app, check_time_limits

    @app.task(name="tests.soft_above_hard", time_limit=30)
    def soft_above_hard() -> None:  # pragma: no cover - never run
        return None

    try:
        assert any("tests.soft_above_hard: soft time limit" in problem for problem in check_time_limits(settings))
    finally:
        app.tasks.pop("tests.soft_above_hard", None)


def test_a_task_whose_limit_is_too_long_is_reported(settings):
    from alm_portal.celery import app, check_time_limits

    @app.task(name="tests.too_long", time_limit=settings.ALM_VISIBILITY_TIMEOUT)
    def too_long() -> None:  # pragma: no cover - never run
        return None

    try:
        assert any("tests.too_long" in problem for problem in check_time_limits(settings))
        from alm_portal.celery import UnsafeTimeLimits, refuse_unsafe_time_limits

        with pytest.raises(UnsafeTimeLimits, match=r"tests\.too_long"):
            refuse_unsafe_time_limits()
    finally:
        app.tasks.pop("tests.too_long", None)


def test_sqlite_embedded_default_is_configured_for_concurrency(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings as s; "
            "d = s.DATABASES['default']; print(d['ENGINE'], d['OPTIONS']['transaction_mode'], d['OPTIONS']['timeout'])",
        ],
        cwd=ROOT,
        env={
            **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")},
            "ALM_VAR_DIR": str(tmp_path),
            "ALM_MODE": "development",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.split() == ["django.db.backends.sqlite3", "IMMEDIATE", "20"], result.stderr


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("ALM_SSO_ROLE_MAP", "ALM.Admin=admin", "must be a JSON object"),
        ("ALM_SSO_ROLE_MAP", '["ALM.Admin"]', "must be a JSON object"),
        ("ALM_SSO_ROLE_MAP", '{"ALM.Admin": "superuser"}', "is not one of"),
        ("ALM_SSO_ROLE_MAP", '{"": "admin"}', "non-empty string"),
        ("ALM_SSO_ROLE_MAP", '{"ALM.Admin": 1}', "non-empty string"),
        ("ALM_SSO_GROUP_TEAM_MAP", '{"group-id": "Not a slug!"}', "does not match"),
        ("ALM_SSO_LINK_BY_USERNAME", "true", "was removed"),
    ],
)
def test_single_sign_on_maps_are_parsed_strictly_at_start_up(tmp_path, variable, value, problem):
    result = _django_check({variable: value}, tmp_path)
    assert result.returncode != 0
    assert f"configuration error: {variable}:" in result.stderr and problem in result.stderr


def test_the_role_map_accepts_every_role_and_defaults_to_the_app_roles(tmp_path):
    from alm_portal.accounts.choices import Role

    every = "{" + ", ".join(f'"group-{role}": "{role}"' for role in Role.values) + "}"
    result = _django_check({"ALM_SSO_ROLE_MAP": every, "ALM_SSO_GROUP_TEAM_MAP": '{"g": "contoso"}'}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert settings.ALM_SSO_ROLE_MAP == {
        "ALM.Admin": "admin",
        "ALM.Approver": "approver",
        "ALM.Maker": "maker",
        "ALM.Auditor": "auditor",
    }
    assert settings.ALM_SSO_GROUP_TEAM_MAP == {} and settings.ALM_SSO_DEMO_LINKING is None


def test_the_demo_takes_its_sign_in_client_from_the_emulators_credentials(tmp_path):
    credentials = tmp_path / "demo-credentials.json"
    credentials.write_text(
        '{"authority": "https://127.0.0.1:8443/t", "sso_client": {"client_id": "c", "client_secret": "s"}, '
        '"tenant_id": "t", "tenant_name": "contoso.example"}'
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ALM_", "DATABASE_URL", "SECRET"))}
    env.update({"ALM_VAR_DIR": str(tmp_path / "var"), "ALM_SSO_DEMO_CREDENTIALS": str(credentials)})
    code = (
        "from alm_portal import settings as s; print(s.ALM_SSO_AUTHORITY, s.ALM_SSO_CLIENT_ID, s.ALM_SSO_CLIENT_SECRET,"
        " s.ALM_SSO_DEMO_LINKING['tenant_id'], s.ALM_SSO_DEMO_LINKING['domain'])"
    )
    shown = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert shown.stdout.split() == ["https://127.0.0.1:8443/t", "c", "s", "t", "contoso.example"], shown.stderr
    credentials.write_text("{}")
    assert "ALM_SSO_DEMO_CREDENTIALS" in _django_check({"ALM_SSO_DEMO_CREDENTIALS": str(credentials)}, tmp_path).stderr
    missing = _django_check({"ALM_SSO_DEMO_CREDENTIALS": str(tmp_path / "not-yet.json")}, tmp_path)
    assert missing.returncode == 0, missing.stderr  # before the emulator's first start: no SSO yet
