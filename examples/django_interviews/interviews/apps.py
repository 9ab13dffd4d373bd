from django.apps import AppConfig


class InterviewsConfig(AppConfig):
    name = "interviews"

    def ready(self) -> None:
        from interviews import signals  # noqa: F401 (connects the post_save receiver)
