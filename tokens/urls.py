from django.urls import path

from . import views

urlpatterns = [
    # Login and logout: portal/urls.py (portal.accounts).
    # Sign-up: portal/urls.py (portal.accounts.signup); its emailed link comes back here.
    path("inscription/confirmer/<str:signed>/", views.signup_confirm, name="signup_confirm"),
    # Reminder email targets (docs/domain.md routing): final URLs, one path per route.
    path("jetons/<uuid:public_id>/renouveler/", views.token_renew, name="token_renew"),
    path("migration/<uuid:public_id>/", views.token_legacy_renew, name="token_legacy_renew"),
    # Pick-up (secret generated and shown once), regeneration, extension. The portal owns jetons/<id>/ itself.
    path("jetons/<uuid:public_id>/recuperer/", views.token_pickup, name="token_pickup"),
    path("jetons/<uuid:public_id>/secret/", views.token_reveal, name="token_reveal"),
    path("jetons/<uuid:public_id>/regenerer/", views.token_regenerate, name="token_regenerate"),
    path("jetons/<uuid:public_id>/etendre/", views.token_extend, name="token_extend"),
    # A new request in place of a token that no longer works (expired, revoked).
    path("jetons/<uuid:public_id>/nouvelle-demande/", views.token_request_new, name="token_request_new"),
    # Access requests.
    path("demandes/", views.request_list, name="request_list"),
    path("demandes/nouvelle/", views.request_new, name="request_new"),
    path("demandes/<uuid:request_id>/", views.request_detail, name="request_detail"),
    path("demandes/<uuid:request_id>/modifier/", views.request_edit, name="request_edit"),
    path("demandes/<uuid:request_id>/abandonner/", views.request_abandon, name="request_abandon"),
    path("demandes/<uuid:request_id>/messages/", views.request_message, name="request_message"),
    path("demandes/<uuid:request_id>/document/", views.request_document, name="request_document"),
]
