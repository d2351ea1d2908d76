"""Production settings for subprocess tests: ALM_MODE=production with every required value set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HOST = "alm.example.com"
PRODUCTION_ENV = {
    "ALM_MODE": "production",
    "SECRET_KEY": "prod-like-secret-key-3kq9VxT2mZr8Lw5bNc7Yh1Jd4Fg6Ps0Ue",
    "ALM_ENCRYPTION_KEY": "bXVzdC1iZS0zMi11cmwtc2FmZS1iYXNlNjQtYnl0ZXM=",
    "ALM_TOKEN_PEPPER": "prod-like-pepper",
    "ALM_AUDIT_CHECKPOINT_KEY": "prod-like-checkpoint-key",
    "ALLOWED_HOSTS": HOST,
    "ALM_ALLOW_LOOPBACK": "false",
}


def production_run(args: list[str], tmp_path: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    """Run `python <args>` from the project root with production settings and nothing inherited that
    could change them (no ALM_*, DATABASE_URL, SECRET*, DEBUG or SECURE_* from the caller)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ALM_", "DATABASE_URL", "SECRET", "DEBUG", "SECURE_", "PYTEST", "DJANGO"))
    }
    env.update(PRODUCTION_ENV)
    env.update({"ALM_VAR_DIR": str(tmp_path / "var"), "DJANGO_SETTINGS_MODULE": "alm_portal.settings"})
    env.update(extra)
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def production_responses(paths: list[str], tmp_path: Path) -> dict[str, Any]:
    """GET each path (https unless prefixed `http:`) in production mode; what came back, by `scheme:path`."""
    result = production_run(["-m", "tests.security.production_probe", json.dumps(paths)], tmp_path)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])
