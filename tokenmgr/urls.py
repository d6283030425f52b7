from django.contrib import admin
from django.urls import include, path

from .api import api

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", api.urls),
    path("", include("availability.urls")),
    path("", include("notifications.urls")),
    path("", include("tokens.urls")),
]
