"""The embedded broker of `make run` (kombu's filesystem transport, alm_portal/broker_filesystem.py): a
consumer never sees a message file before it is whole, and a file it cannot decode never ends the worker.

kombu's own transport creates the message file, then writes it; a worker that lists the folder in between
moves and reads an empty file and dies on "Expecting value" (celery/kombu#1551), which stopped the demo.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from kombu import Connection

from alm_portal import broker_filesystem


def _queue_name(tmp_path: Path) -> str:
    # kombu keeps exchange bindings in class-level state: a queue name per test keeps tests apart.
    return f"q{abs(hash(tmp_path))}"


def _connection(folder: Path, url: str = f"{broker_filesystem.SCHEME}://localhost/") -> Connection:
    for name in ("out", "processed", "control"):
        (folder / name).mkdir(exist_ok=True)
    options = {
        "data_folder_in": str(folder / "out"),
        "data_folder_out": str(folder / "out"),
        "processed_folder": str(folder / "processed"),
        "control_folder": str(folder / "control"),
        "store_processed": False,
    }
    return Connection(url, transport_options=options)


def test_without_redis_the_celery_app_uses_the_atomic_transport(tmp_path: Path) -> None:
    code = "from django.conf import settings; print(settings.CELERY_BROKER_URL)"
    environment = {
        key: value for key, value in os.environ.items() if key not in ("REDIS_URL", "DATABASE_URL", "ALM_VAR_DIR")
    }
    environment.update(DJANGO_SETTINGS_MODULE="alm_portal.settings", ALM_VAR_DIR=str(tmp_path), ALM_MODE="test")

    result = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        capture_output=True,
        text=True,
        env=environment,
        cwd=Path(__file__).resolve().parents[2],
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "alm-filesystem://localhost/"


def test_connecting_to_the_embedded_broker_logs_no_warning(tmp_path: Path, caplog: Any) -> None:
    # Every `make run` process connects often; kombu warned "No hostname was supplied" each time the URL had none.
    caplog.set_level(logging.WARNING, logger="kombu")
    with _connection(tmp_path, "alm-filesystem://localhost/") as connection:
        connection.SimpleQueue(_queue_name(tmp_path)).put({"n": 1})
        connection.info()  # what Celery's worker banner and beat read; kombu warned here

    assert [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING] == []


def test_every_message_arrives_whole(tmp_path: Path) -> None:
    with _connection(tmp_path) as connection:
        queue = connection.SimpleQueue(_queue_name(tmp_path))
        for number in range(20):
            queue.put({"n": number})
        received = [queue.get(timeout=2) for _ in range(20)]
        for message in received:
            message.ack()
        queue.close()

    # Files are taken in name order, and names within one millisecond order by a random uuid: no FIFO promise.
    assert sorted(message.payload["n"] for message in received) == list(range(20))


def test_a_message_file_is_visible_to_consumers_only_once_it_is_whole(tmp_path: Path, monkeypatch: Any) -> None:
    name = _queue_name(tmp_path)
    seen_at_rename: list[list[str]] = []
    real_replace = os.replace

    def replace_watching(source: str, destination: str) -> None:
        # Just before the rename: what a consumer listing the folder would match, and what the file holds.
        seen_at_rename.append(sorted(path.name for path in (tmp_path / "out").glob(f"*.{name}.msg")))
        assert json.loads(Path(source).read_bytes())["body"]
        real_replace(source, destination)

    monkeypatch.setattr(broker_filesystem.os, "replace", replace_watching)
    with _connection(tmp_path) as connection:
        queue = connection.SimpleQueue(name)
        queue.put({"n": 1})
        queue.close()

    assert seen_at_rename == [[]], "the message was renamed into place, never visible half written"
    assert [path.name.endswith(f".{name}.msg") for path in (tmp_path / "out").iterdir()] == [True]


def test_an_unreadable_message_file_is_skipped_and_the_next_one_delivered(tmp_path: Path) -> None:
    with _connection(tmp_path) as connection:
        name = _queue_name(tmp_path)
        queue = connection.SimpleQueue(name)
        (tmp_path / "out" / f"0_00000000-0000-0000-0000-000000000000.{name}.msg").write_bytes(b"")
        queue.put({"n": 2})

        message = queue.get(timeout=3)
        message.ack()
        queue.close()

    assert message.payload == {"n": 2}
