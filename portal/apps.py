from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = _("Espace intégrateur")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from tokenmgr import reauth  # noqa: F401  (connects the login signal: recent authentication)
