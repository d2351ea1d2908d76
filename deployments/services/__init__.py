"""Use cases for pipelines, stages, their windows and freezes, and deployment settings.

The only code that writes them; every change is audited in the same transaction. Permission (admin
scope for all of these) is checked by the views that call them. One module per subject:
pipelines, stages, calendar (windows and freezes), deployment_settings; promotions holds the
promotion actions the detail page and the API both call (imported from deployments.services.promotions).
"""

from deployments.services.calendar import (
    stage_calendar_replace,
    stage_freeze_add,
    stage_freeze_remove,
    stage_freeze_update,
    stage_window_add,
    stage_window_remove,
    stage_window_update,
    time_zone_refusal,
)
from deployments.services.deployment_settings import (
    PreconditionFailed,
    settings_current,
    settings_current_etag,
    settings_export,
    settings_import,
    settings_update,
)
from deployments.services.pipelines import pipeline_create, pipeline_delete, pipeline_update
from deployments.services.stages import (
    eligible_approvers,
    stage_add,
    stage_delete,
    stage_move,
    stage_reorder,
    stage_update,
)

__all__ = [
    "PreconditionFailed",
    "eligible_approvers",
    "pipeline_create",
    "pipeline_delete",
    "pipeline_update",
    "settings_current",
    "settings_current_etag",
    "settings_export",
    "settings_import",
    "settings_update",
    "stage_add",
    "stage_calendar_replace",
    "stage_delete",
    "stage_freeze_add",
    "stage_freeze_remove",
    "stage_freeze_update",
    "stage_move",
    "stage_reorder",
    "stage_update",
    "stage_window_add",
    "stage_window_remove",
    "stage_window_update",
    "time_zone_refusal",
]
