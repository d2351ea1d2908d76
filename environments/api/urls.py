from rest_framework.routers import SimpleRouter

from environments.api.views import EnvironmentViewSet

router = SimpleRouter()
router.register("environments", EnvironmentViewSet, basename="environment")

urlpatterns = router.urls
