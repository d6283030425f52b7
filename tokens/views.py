"""Integrator pages. Placeholders until issue 4 builds the request forms; the URLs are final."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, render

from .models import Token


@login_required
def token_renew(request, public_id):
    """api_gouv route of the reminder email: the renewal form, pre-filled from the token's last request."""
    token = get_object_or_404(Token.objects.for_user(request.user), public_id=public_id)
    return render(request, "tokens/placeholder.html", {"token": token, "title": "Renouveler le jeton"})


def token_legacy_renew(request, public_id):
    """demarches_simplifiees route: explains the change of platform, account creation and a new request."""
    token = get_object_or_404(Token, public_id=public_id)
    return render(request, "tokens/placeholder.html", {"token": token, "title": "Nouvelle demande d'accès"})
