"""The deployments pages, one module per area: promotions, approvals, pipelines, a stage's settings,
pre-flight preview, delivery metrics and the dashboard's live parts."""
