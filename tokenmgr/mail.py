"""The one way an email is made from templates: `<prefix>_subject.txt`, `<prefix>_body.txt`, `<prefix>_body.html`
(docs/emails.md). Every template also receives `site_url` and `SERVICE_NAME`."""

from collections.abc import Sequence
from typing import NamedTuple

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string


class RenderedEmail(NamedTuple):
    subject: str
    text: str
    html: str


def render_email(prefix: str, context: dict) -> RenderedEmail:
    """The three parts of the email `prefix` (a template path without its suffix, e.g. "emails/request_message");
    the subject on one line, whitespace collapsed."""
    context = {"site_url": settings.SITE_URL, "SERVICE_NAME": settings.SERVICE_NAME, **context}
    return RenderedEmail(
        subject=" ".join(render_to_string(f"{prefix}_subject.txt", context).split()),
        text=render_to_string(f"{prefix}_body.txt", context),
        html=render_to_string(f"{prefix}_body.html", context),
    )


def build_email(
    prefix: str, context: dict, *, to: Sequence[str], headers: dict[str, str] | None = None
) -> EmailMultiAlternatives:
    """The message of render_email(prefix, context), text with its HTML alternative, ready to send."""
    rendered = render_email(prefix, context)
    message = EmailMultiAlternatives(
        subject=rendered.subject, body=rendered.text, to=list(to), headers=headers
    )
    message.attach_alternative(rendered.html, "text/html")
    return message
