from rest_framework import serializers

from deployments.models import Job


class JobSerializer(serializers.ModelSerializer):
    environment = serializers.SerializerMethodField()
    created_by = serializers.SerializerMethodField()

    class Meta:
        model = Job
        fields = [
            "id",
            "kind",
            "status",
            "environment",
            "params",
            "result",
            "progress",
            "progress_message",
            "error_code",
            "error_message",
            "attempts",
            "not_before",
            "created_at",
            "created_by",
            "claimed_at",
            "finished_at",
        ]

    def get_environment(self, job: Job) -> dict | None:
        return {"id": job.environment_id, "name": job.environment.name} if job.environment_id else None

    def get_created_by(self, job: Job) -> dict | None:
        user = job.created_by
        if user is None:
            return None
        return {"id": user.pk, "username": user.username, "display_name": user.shown_name}
