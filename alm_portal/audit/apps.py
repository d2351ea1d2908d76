from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "alm_portal.audit"
    label = "audit"
    verbose_name = "Audit"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the audit chain verification job kind and its handler with the job engine, in every process.
        from alm_portal.audit import tasks  # noqa: F401
