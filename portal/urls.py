from django.urls import path
from django.views.i18n import set_language

from . import views

urlpatterns = [
    path("", views.dashboard, name="portal_dashboard"),
    path("jetons/<uuid:public_id>/", views.token_detail, name="portal_token"),
    path("jetons/<uuid:public_id>/decliner/", views.token_decline, name="portal_token_decline"),
    path("jetons/<uuid:public_id>/reprendre-rappels/", views.token_resume, name="portal_token_resume"),
    path("jetons/<uuid:public_id>/revoquer/", views.token_revoke, name="portal_token_revoke"),
    path("verifier/", views.verify, name="portal_verify"),
    path("calendrier/", views.calendar_settings, name="portal_calendar"),
    path("calendrier/<str:key>.ics", views.calendar_feed, name="portal_calendar_feed"),
    path("webhooks/", views.webhook_list, name="portal_webhooks"),
    path("webhooks/<int:pk>/", views.webhook_detail, name="portal_webhook"),
    path("webhooks/<int:pk>/action/", views.webhook_action, name="portal_webhook_action"),
    # Language switch (Django's set_language view; POST with CSRF).
    path("i18n/setlang/", set_language, name="set_language"),
]
