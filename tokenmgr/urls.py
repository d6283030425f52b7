from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from . import health
from .api import api

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("", include("portal.urls")),  # before api.urls: ninja answers "/" (api-root) otherwise
    path("", api.urls),
    path("", include("availability.urls")),
    path("", include("notifications.urls")),
    path("", include("tokens.urls")),
]

if settings.BENCH_VIEWS:
    urlpatterns.insert(0, path("", include("tokenmgr.bench_views")))
