from django.urls import path
from rest_framework.routers import SimpleRouter

from alm_portal.notifications.api.views import MyEmailNotificationsView, WebhookViewSet

router = SimpleRouter()
router.register("webhooks", WebhookViewSet, basename="webhook")

urlpatterns = [
    path("me/notifications/", MyEmailNotificationsView.as_view(), name="my-notifications"),
    *router.urls,
]
