"""Which request a token's pages offer: renew it, make a new request in its place, or follow the one in progress.

One rule for the portal's token page, the pick-up page and the request routes themselves, so that no page leads to a
dead end ("nothing can be done") nor into a second request beside one already open.
"""

import datetime as dt
import enum
from dataclasses import dataclass

from django.urls import reverse
from django.utils import timezone

from .models import AccessRequest, Origin, Token


class RequestAction(enum.StrEnum):
    RENEW = "renew"  # api_gouv token in service: renewal form (pre-filled), extension form
    LEGACY = "legacy"  # demarches-simplifiees token in service: a new request on this platform
    NEW = "new"  # expired or revoked token: a new request for its client
    PENDING = "pending"  # a request that would replace the token is open: follow it
    NONE = "none"  # already replaced by a newer token


@dataclass(frozen=True)
class TokenRequestAction:
    action: RequestAction
    url: str = ""  # the form to open (RENEW, LEGACY, NEW) or the open request (PENDING)
    extend_url: str = ""  # RENEW only
    pending: AccessRequest | None = None

    @property
    def pending_date(self) -> dt.datetime | None:
        if self.pending is None:
            return None
        return self.pending.submitted_at or self.pending.created_at


def token_open_request(*, token: Token) -> AccessRequest | None:
    """The open request (draft, submitted, changes requested) about `token`, if any: at most one exists."""
    return AccessRequest.objects.open().filter(token=token).order_by("-created_at", "-id").first()


def token_request_action(*, token: Token, now: dt.datetime | None = None) -> TokenRequestAction:
    if token.renewed_by_id is not None:
        return TokenRequestAction(RequestAction.NONE)
    pending = token_open_request(token=token)
    if pending is not None:
        url = reverse("request_detail", kwargs={"request_id": pending.public_id})
        return TokenRequestAction(RequestAction.PENDING, url=url, pending=pending)
    if not token.is_usable(now or timezone.now()):
        return TokenRequestAction(
            RequestAction.NEW, url=reverse("token_request_new", kwargs={"public_id": token.public_id})
        )
    if token.origin == Origin.DEMARCHES_SIMPLIFIEES:
        return TokenRequestAction(
            RequestAction.LEGACY, url=reverse("token_legacy_renew", kwargs={"public_id": token.public_id})
        )
    return TokenRequestAction(
        RequestAction.RENEW,
        url=reverse("token_renew", kwargs={"public_id": token.public_id}),
        extend_url=reverse("token_extend", kwargs={"public_id": token.public_id}),
    )
