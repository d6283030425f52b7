"""The exposure panel of a token's page: where its secret was reported exposed, the way to replace it, and the
« Ce secret a fuité » button (portal.exposure)."""

from django import template
from django.urls import reverse

from notifications.emails import ROUTE_URL_NAMES
from tokens.selectors import token_replaceable

register = template.Library()

SHOWN = 10


@register.inclusion_tag("portal/_exposure_panel.html")
def token_exposure_panel(token):
    exposures = list(token.exposures.order_by("-first_seen", "-id")[:SHOWN])
    replace_url = None
    if exposures and token_replaceable(token=token):
        replace_url = reverse(ROUTE_URL_NAMES[token.origin], kwargs={"public_id": token.public_id})
    return {
        "token": token,
        "exposures": exposures,
        "replace_url": replace_url,
        "report_url": reverse("portal_token_exposed", args=[token.public_id]) if token.is_usable() else None,
    }
