"""The Prometheus text exposition format, version 0.0.4 (no client library needed for a few gauges)."""

from __future__ import annotations

import math

from alm_portal.monitoring.selectors import MetricFamily

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape_label(value: str) -> str:
    # The format's own escapes; a name with a quote or a newline cannot end a label or forge a line.
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


def render(families: list[MetricFamily]) -> str:
    lines: list[str] = []
    for family in families:
        lines.append(f"# HELP {family.name} {_escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        for sample in family.samples:
            labels = ",".join(f'{key}="{_escape_label(value)}"' for key, value in sample.labels)
            series = f"{sample.name}{{{labels}}}" if labels else sample.name
            lines.append(f"{series} {_number(sample.value)}")
    return "\n".join(lines) + "\n"
