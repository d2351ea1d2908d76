from django.urls import path

from deployments.views import approvals, dashboard, metrics, pipelines, preflight, promotions, stage_settings

app_name = "deployments"

urlpatterns = [
    path("promotions/", promotions.promotion_list, name="promotion-list"),
    path("promotions/<int:pk>/", promotions.promotion_detail, name="promotion-detail"),
    path("promotions/<int:pk>/progress/", promotions.promotion_progress, name="promotion-progress"),
    path("promotions/<int:pk>/source-diff/", promotions.promotion_source, name="promotion-source-diff"),
    path("promotions/<int:pk>/approve/", promotions.promotion_approve, name="promotion-approve"),
    path("promotions/<int:pk>/reject/", promotions.promotion_reject, name="promotion-reject"),
    path("promotions/<int:pk>/cancel/", promotions.promotion_cancel, name="promotion-cancel"),
    path("promotions/<int:pk>/retry/", promotions.promotion_retry, name="promotion-retry"),
    path("promotions/<int:pk>/rollback/", promotions.promotion_rollback, name="promotion-rollback"),
    path("versions/<int:version_pk>/promote/", promotions.promotion_request, name="promotion-request"),
    path("approvals/", approvals.approvals_inbox, name="approvals-inbox"),
    path("metrics/", metrics.delivery_metrics_page, name="metrics"),
    path("jobs/running/", dashboard.running_jobs, name="running-jobs"),
    path(
        "versions/<int:version_pk>/promote/preview/",
        preflight.promotion_request_preview,
        name="promotion-request-preview",
    ),
    path("pipelines/", pipelines.pipeline_list, name="pipeline-list"),
    path("pipelines/new/", pipelines.pipeline_create, name="pipeline-create"),
    path("pipelines/<int:pk>/", pipelines.pipeline_detail, name="pipeline-detail"),
    path("pipelines/<int:pk>/edit/", pipelines.pipeline_edit, name="pipeline-edit"),
    path("pipelines/<int:pk>/delete/", pipelines.pipeline_delete, name="pipeline-delete"),
    path("pipelines/<int:pk>/stages/new/", pipelines.stage_create, name="stage-create"),
    path("stages/<int:pk>/", pipelines.stage_edit, name="stage-edit"),
    path("stages/<int:pk>/delete/", pipelines.stage_delete, name="stage-delete"),
    path("stages/<int:pk>/move/", pipelines.stage_move, name="stage-move"),
    path("stages/<int:pk>/windows/", pipelines.window_create, name="window-create"),
    path("stages/<int:pk>/freezes/", pipelines.freeze_create, name="freeze-create"),
    path("stages/<int:pk>/settings/", stage_settings.stage_settings, name="stage-settings"),
    path("stages/<int:pk>/settings/import/", stage_settings.stage_settings_import, name="stage-settings-import"),
    path("stages/<int:pk>/settings/export/", stage_settings.stage_settings_export, name="stage-settings-export"),
    path("windows/<int:pk>/", pipelines.window_edit, name="window-edit"),
    path("freezes/<int:pk>/", pipelines.freeze_edit, name="freeze-edit"),
    path("windows/<int:pk>/delete/", pipelines.window_delete, name="window-delete"),
    path("freezes/<int:pk>/delete/", pipelines.freeze_delete, name="freeze-delete"),
]
