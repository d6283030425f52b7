from django.urls import path
from django.views.i18n import set_language

from . import accessibility, accounts, exposure, reauth, views

urlpatterns = [
    # Sign-in (LOGIN_URL = /connexion/): password or emailed link, logout, password reset.
    path("connexion/", accounts.LoginView.as_view(), name="login"),
    path("connexion/lien/", accounts.login_link, name="login_link"),
    path("connexion/lien/demander/", accounts.login_link_request, name="login_link_request"),
    path("connexion/lien/envoye/", accounts.login_link_sent, name="login_link_sent"),
    path("connexion/mot-de-passe/", accounts.PasswordResetView.as_view(), name="password_reset"),
    path(
        "connexion/mot-de-passe/envoye/", accounts.PasswordResetDoneView.as_view(), name="password_reset_done"
    ),
    path(
        "connexion/mot-de-passe/<uidb64>/<token>/",
        accounts.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path(
        "connexion/mot-de-passe/termine/",
        accounts.PasswordResetCompleteView.as_view(),
        name="password_reset_complete",
    ),
    path("deconnexion/", accounts.LogoutView.as_view(), name="logout"),
    path("inscription/", accounts.signup, name="signup"),
    # Recent authentication before sensitive actions: password, or a one-time link by email.
    path("reauth/", reauth.reauth, name="reauth"),
    path("reauth/lien/", reauth.reauth_link, name="reauth_link"),
    path("", views.dashboard, name="portal_dashboard"),
    path("jetons.csv", views.dashboard_export, name="portal_export"),
    path("jetons/recherche/", views.token_search_secret, name="portal_token_search"),
    path("jetons/<uuid:public_id>/", views.token_detail, name="portal_token"),
    path("jetons/<uuid:public_id>/decliner/", views.token_decline, name="portal_token_decline"),
    path("jetons/<uuid:public_id>/reprendre-rappels/", views.token_resume, name="portal_token_resume"),
    path("jetons/<uuid:public_id>/revoquer/", views.token_revoke, name="portal_token_revoke"),
    path("jetons/<uuid:public_id>/fuite/", exposure.token_exposed, name="portal_token_exposed"),
    path("verifier/", views.verify, name="portal_verify"),
    path("acces/", views.access_list, name="portal_access"),
    path("calendrier/", views.calendar_settings, name="portal_calendar"),
    path("calendrier/<str:key>.ics", views.calendar_feed, name="portal_calendar_feed"),
    path("webhooks/", views.webhook_list, name="portal_webhooks"),
    path("webhooks/<int:pk>/", views.webhook_detail, name="portal_webhook"),
    path("webhooks/<int:pk>/action/", views.webhook_action, name="portal_webhook_action"),
    # Language switch (Django's set_language view; POST with CSRF).
    path("accessibilite/", accessibility.statement, name="accessibility"),
    path("i18n/setlang/", set_language, name="set_language"),
]
