from django.apps import AppConfig


class AuditVerificationConfig(AppConfig):
    name = "alm_portal.audit_verification"
    label = "audit_verification"
    verbose_name = "Audit chain verification"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the verification job kind and its handler with the job engine, in every process.
        from alm_portal.audit_verification import tasks  # noqa: F401
