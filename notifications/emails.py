"""Rendering of reminder emails (CONTRACT §4): one set of templates per route, the threshold in the context.

Templates: emails/reminder_<route>_subject.txt | _body.txt | _body.html. A threshold may override any part with
emails/reminder_<route>_<threshold>_<part> (looked up first). The system check in checks.py renders every
(threshold, route) pair at start-up.
"""

import datetime as dt
import functools
from dataclasses import dataclass, field
from email.utils import make_msgid
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.dispatch import receiver
from django.template.loader import select_template
from django.test.signals import setting_changed
from django.urls import reverse
from django.utils import translation

from tokens.models import Origin

PARTS = ("subject.txt", "body.txt", "body.html")
ROUTES = tuple(Origin.values)
# Where each route's email leads (CONTRACT §2 routing): different paths, not only a different query string.
ROUTE_URL_NAMES = {
    Origin.API_GOUV.value: "token_renew",
    Origin.DEMARCHES_SIMPLIFIEES.value: "token_legacy_renew",
}
TEMPLATE_PREFIX = "emails/reminder"


@dataclass(frozen=True)
class PersonalLink:
    email: str
    url: str


@dataclass(frozen=True)
class ReminderEmail:
    """Everything a reminder email shows; built from the database by services, or from samples by the check."""

    threshold: int
    route: str
    token_public_id: str
    client_name: str
    token_label: str
    token_prefix: str
    privileges: list[tuple[str, str]]  # (code, label)
    expires_on: dt.date
    days_left: int
    recipients: list[str]
    action_url: str
    personal_links: list[PersonalLink] = field(default_factory=list)
    admins_fallback: bool = False


def template_names(route: str, threshold: int, part: str, prefix: str = TEMPLATE_PREFIX) -> list[str]:
    return [f"{prefix}_{route}_{threshold}_{part}", f"{prefix}_{route}_{part}"]


def action_url(route: str, public_id) -> str:
    return settings.SITE_URL + reverse(ROUTE_URL_NAMES[route], kwargs={"public_id": public_id})


@functools.lru_cache(maxsize=256)
def _template(route: str, threshold: int, part: str, prefix: str):
    """The compiled template of one part; memoised (the per-threshold override lookup misses cost an exception)."""
    return select_template(template_names(route, threshold, part, prefix))


@receiver(setting_changed)
def _forget_templates(setting, **kwargs):
    if setting in {"TEMPLATES", "REMINDER_DAYS"}:
        _template.cache_clear()


def render_parts(data: ReminderEmail, prefix: str = TEMPLATE_PREFIX) -> tuple[str, str, str]:
    context = {"r": data, "site_url": settings.SITE_URL}
    with translation.override("fr"):
        rendered = [_template(data.route, data.threshold, part, prefix).render(context) for part in PARTS]
    subject = " ".join(rendered[0].split())
    return subject, rendered[1].strip() + "\n", rendered[2]


def build_message(data: ReminderEmail, connection=None) -> EmailMultiAlternatives:
    subject, text, html = render_parts(data)
    domain = urlsplit(settings.SITE_URL).hostname or "tokenmgr.localhost"
    message = EmailMultiAlternatives(
        subject=subject,
        body=text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=data.recipients,
        connection=connection,
        headers={
            "Message-ID": make_msgid(domain=domain),
            "X-Reminder-Threshold": str(data.threshold),
            "X-Reminder-Route": data.route,
            "X-Token-Id": data.token_public_id,
            "Auto-Submitted": "auto-generated",
        },
    )
    message.attach_alternative(html, "text/html")
    return message


def sample(route: str, threshold: int) -> ReminderEmail:
    """A representative email, without the database (for the system check)."""
    public_id = "00000000-0000-4000-8000-000000000000"
    url = settings.SITE_URL + f"/{route}/{public_id}/"
    return ReminderEmail(
        threshold=threshold,
        route=route,
        token_public_id=public_id,
        client_name="Commune exemple",
        token_label="Jeton exemple",
        token_prefix="tkm_exemple",
        privileges=[("entreprises", "Entreprises")],
        expires_on=dt.date(2027, 5, 20),
        days_left=threshold,
        recipients=["contact@example.org"],
        action_url=url,
        personal_links=[PersonalLink("contact@example.org", url + "?sesame=x")],
    )
