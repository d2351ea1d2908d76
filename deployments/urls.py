from django.urls import path

from deployments import views, views_dashboard, views_metrics, views_preflight

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
    path("pipelines/", views.pipeline_list, name="pipeline-list"),
    path("pipelines/<int:pk>/", views.pipeline_detail, name="pipeline-detail"),
    path("jobs/running/", views_dashboard.running_jobs, name="running-jobs"),
    path(
        "versions/<int:version_pk>/promote/preview/",
        views_preflight.promotion_request_preview,
        name="promotion-request-preview",
    ),
]
