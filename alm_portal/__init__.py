"""ALM Portal: governance for promoting Power Platform solutions between Dataverse environments."""

from alm_portal.celery import app as celery_app

__all__ = ("celery_app",)
