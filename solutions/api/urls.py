from rest_framework.routers import SimpleRouter

from solutions.api import views

router = SimpleRouter()
router.register("solutions", views.SolutionViewSet, basename="solution")
router.register("versions", views.SolutionVersionViewSet, basename="version")

urlpatterns = router.urls
