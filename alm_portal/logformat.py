"""Log records as one line each, JSON or text, carrying the request id and the job id (issue 8).

- ALM_LOG_FORMAT=json (the default in production): one JSON object per line with time, level,
  logger, message, request_id, job_id and, for errors, the traceback. JSON escapes CR and LF, so
  a message or a traceback holding them stays one line.
- ALM_LOG_FORMAT=text: "<time> <level> <logger> [<request id>] [job <id>] <message>"; CR and LF in
  the message are written as \\r and \\n, and the lines of a traceback are indented, so nothing a
  user typed (a name, a comment, a URL) can forge a record of its own.

Both formats mask credentials in what they write: query parameters such as `access_token` or
`code` in any URL of the message or traceback, and API token text (alm_portal.log_redaction).

The request id is bound by RequestIdMiddleware for a request and by the job engine for the job it
runs (with the request id of the request that queued it); the job id only while a job runs. These
ids are for log records only: business code receives them as arguments.
"""

from __future__ import annotations

import contextvars
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from alm_portal.log_redaction import redact
from alm_portal.middleware import bind_request_id_for_logs, reset_request_id_for_logs

_current_job_id: contextvars.ContextVar[str] = contextvars.ContextVar("job_id", default="-")


@contextmanager
def job_log_context(*, job_id: int, request_id: str) -> Iterator[None]:
    """Log records inside the block carry this job's id and the id of the request that queued it."""
    job_token = _current_job_id.set(str(job_id))
    request_token = bind_request_id_for_logs(request_id)
    try:
        yield
    finally:
        reset_request_id_for_logs(request_token)
        _current_job_id.reset(job_token)


class JobIdLogFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.job_id = _current_job_id.get()
        return True


def _utc_time(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ids(record: logging.LogRecord) -> tuple[str, str]:
    return str(getattr(record, "request_id", "-")), str(getattr(record, "job_id", "-"))


class JsonLogFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        request_id, job_id = _ids(record)
        entry: dict[str, object] = {
            "time": _utc_time(record),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            "request_id": None if request_id == "-" else request_id,
            "job_id": None if job_id == "-" else job_id,
        }
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        if record.stack_info:
            entry["stack"] = redact(self.formatStack(record.stack_info))
        # ensure_ascii also escapes U+2028/U+2029, which some log viewers treat as line breaks.
        return json.dumps(entry, ensure_ascii=True, default=str)


class TextLogFormatter(logging.Formatter):
    """One line per record for people reading a terminal; continuation lines of a traceback are indented."""

    def format(self, record: logging.LogRecord) -> str:
        request_id, job_id = _ids(record)
        message = redact(record.getMessage()).replace("\r", "\\r").replace("\n", "\\n")
        job = f" [job {job_id}]" if job_id != "-" else ""
        line = f"{_utc_time(record)} {record.levelname} {record.name} [{request_id}]{job} {message}"
        extra = ""
        if record.exc_info:
            extra = self.formatException(record.exc_info)
        if record.stack_info:
            extra = (extra + "\n" if extra else "") + self.formatStack(record.stack_info)
        if extra:
            extra = redact(extra)
            line += "".join("\n    | " + part for part in extra.replace("\r", "\\r").split("\n"))
        return line
