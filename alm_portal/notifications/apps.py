from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "alm_portal.notifications"
    label = "notifications"
    verbose_name = "Notifications: signed webhooks and email, derived from the audit log"
