from rest_framework.routers import SimpleRouter

from deployments.api import pipelines, views

router = SimpleRouter()
router.register("pipelines", pipelines.PipelineViewSet, basename="pipeline")
router.register("stages", pipelines.StageViewSet, basename="stage")
router.register("promotions", views.PromotionViewSet, basename="promotion")
router.register("jobs", views.JobViewSet, basename="job")

urlpatterns = router.urls
