"""The deployments HTML forms: promotions (request, decisions, rollback) and the pipeline editor."""
