from django.conf import settings
from django.contrib import admin
from django.contrib.staticfiles import finders
from django.http import FileResponse, Http404
from django.urls import include, path
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET

from . import health, metrics
from .api import api

# The JSON API first: Django tries patterns in order and /v2/privileges is the hot path. Without ninja's empty home
# page at its mount point, which would shadow the portal's dashboard at "/" (see api.get_root_path).
api_patterns, api_app_name, api_namespace = api.urls
api_patterns = [pattern for pattern in api_patterns if pattern.name != "api-root"]

FAVICON = "dsfr/dist/favicon/favicon.ico"  # shipped by django-dsfr, linked by its base template


@require_GET
@cache_control(public=True, max_age=86400)
def favicon(request):
    """/favicon.ico, which browsers and crawlers ask for whatever the page links: the DSFR icon, served as is."""
    found = finders.find(FAVICON)
    if not found:
        raise Http404
    return FileResponse(open(found, "rb"), content_type="image/x-icon")  # noqa: SIM115 - closed by the response


urlpatterns = [
    path("favicon.ico", favicon, name="favicon"),
    path("", (api_patterns, api_app_name, api_namespace)),
    path("admin/", admin.site.urls),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics, name="metrics"),
    path("", include("portal.urls")),
    path("", include("availability.urls")),
    path("", include("notifications.urls")),
    path("", include("evolutions.urls")),
    path("", include("tokens.urls")),
]

if settings.BENCH_VIEWS:
    urlpatterns.insert(0, path("", include("tokenmgr.bench_views")))
