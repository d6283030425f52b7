"""Start-up check: DEPRECATED_ROUTES is well formed (dates, sunset not before deprecation)."""

from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from . import deprecation


@checks.register()
def deprecated_routes_check(app_configs=None, **kwargs):
    try:
        deprecation.deprecated_routes()
    except ImproperlyConfigured as error:
        return [checks.Error(str(error), id="evolutions.E001")]
    return []
