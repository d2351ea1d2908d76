"""Pipelines, stages, promotions, approvals and jobs (built in the promotion-workflow issue)."""
