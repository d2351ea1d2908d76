from rest_framework.routers import SimpleRouter

from deployments.api import views

router = SimpleRouter()
router.register("pipelines", views.PipelineViewSet, basename="pipeline")
router.register("stages", views.StageViewSet, basename="stage")
router.register("promotions", views.PromotionViewSet, basename="promotion")
router.register("jobs", views.JobViewSet, basename="job")

urlpatterns = router.urls
