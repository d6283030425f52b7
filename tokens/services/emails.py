"""Access-request emails (templates/emails/request_<name>_subject.txt | _body.txt | _body.html), sent after commit."""

import logging
from collections.abc import Sequence

from django.conf import settings
from django.db import transaction
from django.urls import reverse

from tokenmgr.mail import build_email

from ..models import (
    AccessRequest,
)
from ..selectors import (
    emails_dedupe,
)

logger = logging.getLogger("tokens.services")

# ------------------------------------------------------------------------------
# Emails (templates/emails/request_<name>_subject.txt | _body.txt | _body.html)
# ------------------------------------------------------------------------------


def _absolute(path: str) -> str:
    return settings.SITE_URL + path


def _request_mail(name: str, *, to: Sequence[str], access_request: AccessRequest, **extra) -> None:
    """Render and send after commit; a failed send is logged, it never undoes the transition."""
    recipients = emails_dedupe(emails=to)
    if not recipients:
        return
    context = {
        "access_request": access_request,
        "client": access_request.client,
        "request_url": _absolute(reverse("request_detail", args=[access_request.public_id])),
        "admin_url": _absolute(reverse("admin:tokens_accessrequest_change", args=[access_request.pk])),
        **extra,
    }
    message = build_email(
        f"emails/request_{name}",
        context,
        to=recipients,
        headers={"X-Access-Request-Id": str(access_request.public_id)},
    )

    def send() -> None:
        try:
            message.send()
        except Exception:
            logger.exception("access request email %s failed for %s", name, access_request.public_id)

    transaction.on_commit(send)


def _applicant_email(access_request: AccessRequest) -> list[str]:
    return [access_request.applicant.email]
