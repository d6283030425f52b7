from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"
    verbose_name = "Notifications"

    def ready(self) -> None:
        from . import (
            checks,  # noqa: F401  (registers the reminder template check)
            exposure,  # noqa: F401  (exposure alerts: the token_exposed receiver and its task)
            receivers,  # noqa: F401  (connects the token signals to webhooks)
        )
