from django.urls import path

from deployments import pipeline_views, settings_views, views, views_dashboard, views_metrics, views_preflight

app_name = "deployments"

urlpatterns = [
    path("promotions/", views.promotion_list, name="promotion-list"),
    path("promotions/<int:pk>/", views.promotion_detail, name="promotion-detail"),
    path("promotions/<int:pk>/progress/", views.promotion_progress, name="promotion-progress"),
    path("promotions/<int:pk>/approve/", views.promotion_approve, name="promotion-approve"),
    path("promotions/<int:pk>/reject/", views.promotion_reject, name="promotion-reject"),
    path("promotions/<int:pk>/cancel/", views.promotion_cancel, name="promotion-cancel"),
    path("promotions/<int:pk>/retry/", views.promotion_retry, name="promotion-retry"),
    path("promotions/<int:pk>/rollback/", views.promotion_rollback, name="promotion-rollback"),
    path("versions/<int:version_pk>/promote/", views.promotion_request, name="promotion-request"),
    path("approvals/", views.approvals_inbox, name="approvals-inbox"),
    path("metrics/", views_metrics.delivery_metrics_page, name="metrics"),
    path("jobs/running/", views_dashboard.running_jobs, name="running-jobs"),
    path(
        "versions/<int:version_pk>/promote/preview/",
        views_preflight.promotion_request_preview,
        name="promotion-request-preview",
    ),
    path("pipelines/", pipeline_views.pipeline_list, name="pipeline-list"),
    path("pipelines/new/", pipeline_views.pipeline_create, name="pipeline-create"),
    path("pipelines/<int:pk>/", pipeline_views.pipeline_detail, name="pipeline-detail"),
    path("pipelines/<int:pk>/edit/", pipeline_views.pipeline_edit, name="pipeline-edit"),
    path("pipelines/<int:pk>/delete/", pipeline_views.pipeline_delete, name="pipeline-delete"),
    path("pipelines/<int:pk>/stages/new/", pipeline_views.stage_create, name="stage-create"),
    path("stages/<int:pk>/", pipeline_views.stage_edit, name="stage-edit"),
    path("stages/<int:pk>/delete/", pipeline_views.stage_delete, name="stage-delete"),
    path("stages/<int:pk>/move/", pipeline_views.stage_move, name="stage-move"),
    path("stages/<int:pk>/windows/", pipeline_views.window_create, name="window-create"),
    path("stages/<int:pk>/freezes/", pipeline_views.freeze_create, name="freeze-create"),
    path("stages/<int:pk>/settings/", settings_views.stage_settings, name="stage-settings"),
    path("stages/<int:pk>/settings/import/", settings_views.stage_settings_import, name="stage-settings-import"),
    path("stages/<int:pk>/settings/export/", settings_views.stage_settings_export, name="stage-settings-export"),
    path("windows/<int:pk>/", pipeline_views.window_edit, name="window-edit"),
    path("freezes/<int:pk>/", pipeline_views.freeze_edit, name="freeze-edit"),
    path("windows/<int:pk>/delete/", pipeline_views.window_delete, name="window-delete"),
    path("freezes/<int:pk>/delete/", pipeline_views.freeze_delete, name="freeze-delete"),
]
