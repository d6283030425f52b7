from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class EvolutionsConfig(AppConfig):
    name = "evolutions"
    verbose_name = _("Évolutions de l'API")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the DEPRECATED_ROUTES check)
