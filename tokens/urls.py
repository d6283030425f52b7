from django.contrib.auth import views as auth_views
from django.urls import path

from . import views

urlpatterns = [
    path("connexion/", auth_views.LoginView.as_view(), name="login"),
    path("deconnexion/", auth_views.LogoutView.as_view(), name="logout"),
    # Reminder email targets (CONTRACT §2 routing): final URLs, one path per route.
    path("jetons/<uuid:public_id>/renouveler/", views.token_renew, name="token_renew"),
    path("migration/<uuid:public_id>/", views.token_legacy_renew, name="token_legacy_renew"),
]
