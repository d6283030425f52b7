"""Rendering of reminder emails: one set of templates per route, the threshold in the context.

Each email goes to one recipient and names no one else: its own address, its own sign-in link (none for the ADMINS
fallback), and only the number of the token's other contacts who received the same reminder in their own message.

Templates: emails/reminder_<route>_subject.txt | _body.txt | _body.html. A threshold may override any part with
emails/reminder_<route>_<threshold>_<part> (looked up first). The system check in checks.py renders every
(threshold, route) pair at start-up. The .txt parts are rendered with autoescape off (plain text, not HTML).

Speed (delivery sends thousands of these): the templates are rendered once per *shape* of email — route, threshold,
days left, expiry date, fallback note, number of privileges, whether the label is empty, whether there is a sign-in
link, how many other recipients, the pending request's state and kind, the pre-filled field groups, language — with unique slot markers in place of the per-mail strings; the result
is cut at the markers into a skeleton, and each email is the skeleton joined with its own strings (HTML-escaped where the template escaped the marker). The first
email of each shape is also rendered in full and compared: a template that transforms a per-mail string (a filter
other than escaping or `default`) makes that shape fall back to full rendering, so the output is always what Django
renders. Messages are Django's own (EmailMultiAlternatives, sent with the backend's send_messages).

Why the skeletons stay (re-measured 2026-11-30 on the 2-core bench machine, `flock /tmp/bench.lock
scripts/with_services.py -- bench/run_all.py reminders`, 4 delivery processes, 6,925 mails; target 300 mails/s):
- skeletons: 279 / 513 / 329 mails/s, 2.59 / 2.30 / 2.57 ms of sender CPU per mail;
- each mail rendered with render_to_string instead: 372 / 390 mails/s, 3.62 / 3.49 ms of sender CPU per mail.
Mails/s swing with the machine's other load; CPU per mail does not: plain rendering adds ~1.1 ms per mail (+40 %;
in isolation the three parts cost 0.75 ms rendered, 0.03 ms filled). That leaves the 300 mails/s target no margin.
"""

import datetime as dt
import functools
import hashlib
import hmac
import logging
import re
import uuid
from dataclasses import dataclass, replace
from email.utils import make_msgid
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.dispatch import receiver
from django.template.loader import select_template
from django.test.signals import setting_changed
from django.urls import reverse
from django.utils import translation
from django.utils.html import conditional_escape

from tokens.models import Origin

PARTS = ("subject.txt", "body.txt", "body.html")
ROUTES = tuple(Origin.values)
# Where each route's email leads (docs/domain.md routing): different paths, not only a different query string.
ROUTE_URL_NAMES = {
    Origin.API_GOUV.value: "token_renew",
    Origin.DEMARCHES_SIMPLIFIEES.value: "token_legacy_renew",
}
TEMPLATE_PREFIX = "emails/reminder"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReminderEmail:
    """Everything a reminder email shows; built from the database by delivery, or from samples by the check."""

    threshold: int
    route: str
    token_public_id: str
    client_name: str
    token_label: str
    token_prefix: str
    privileges: list[tuple[str, str]]  # (code, label)
    expires_on: dt.date
    days_left: int
    recipient: str  # the one address in To
    action_url: str
    personal_link: str = ""  # the recipient's own sign-in link (action_url + sesame token), or ""
    other_recipients: int = 0  # how many other contacts got this reminder, each in a message of their own
    admins_fallback: bool = False
    # The open request that would replace the token, decided at sending time: its state (a value of
    # AccessRequest.State, "" when there is none), kind, date (already formatted) and page.
    pending_state: str = ""
    pending_kind: str = ""
    pending_date: str = ""
    pending_url: str = ""
    # What the renewal form is pre-filled with (tokens.prefill): the date of the earlier validated request it
    # copies (formatted; "" when the form starts from the token alone), the field groups filled and to fill.
    prefill_date: str = ""
    prefill_fields: tuple[str, ...] = ()
    prefill_missing: tuple[str, ...] = ()


def template_names(route: str, threshold: int, part: str, prefix: str = TEMPLATE_PREFIX) -> list[str]:
    return [f"{prefix}_{route}_{threshold}_{part}", f"{prefix}_{route}_{part}"]


_URL_PLACEHOLDER = uuid.UUID(int=0)


@functools.lru_cache(maxsize=16)
def _action_url_pattern(route: str, site_url: str) -> tuple[str, str]:
    """The route's absolute URL cut around its public id: reversed once, not per email."""
    url = site_url + reverse(ROUTE_URL_NAMES[route], kwargs={"public_id": _URL_PLACEHOLDER})
    head, sep, tail = url.partition(str(_URL_PLACEHOLDER))
    assert sep and str(_URL_PLACEHOLDER) not in tail, url
    return head, tail


def action_url(route: str, public_id) -> str:
    head, tail = _action_url_pattern(route, settings.SITE_URL)
    return f"{head}{uuid.UUID(str(public_id))}{tail}"


@functools.lru_cache(maxsize=256)
def _template(route: str, threshold: int, part: str, prefix: str):
    """The compiled template of one part; memoised (the per-threshold override lookup misses cost an exception)."""
    return select_template(template_names(route, threshold, part, prefix))


@receiver(setting_changed)
def _forget_templates(setting, **kwargs):
    if setting in {"TEMPLATES", "REMINDER_DAYS", "ROOT_URLCONF", "SITE_URL", "SERVICE_NAME"}:
        _template.cache_clear()
        _skeletons.clear()
        _action_url_pattern.cache_clear()


def _render_full(data: ReminderEmail, prefix: str) -> list[str]:
    context = {"r": data, "site_url": settings.SITE_URL, "SERVICE_NAME": settings.SERVICE_NAME}
    return [_template(data.route, data.threshold, part, prefix).render(context) for part in PARTS]


# -- skeletons -------------------------------------------------------------------------------------------------------
# A slot marker carries a probe that autoescape changes, so each occurrence tells whether the template escaped it.
_OPEN, _CLOSE, _PROBE = "\ue000", "\ue001", "<&'"
_SLOT_RE = re.compile("\ue000(<&'|&lt;&amp;&#x27;)([a-z0-9_]+)\ue001")
_MAX_SKELETONS = 1024
# shape key -> one list of pieces per part (a str, or a slot name with its escaping), or None: render in full
_skeletons: dict[tuple, list[list] | None] = {}


def _slot(name: str) -> str:
    return f"{_OPEN}{_PROBE}{name}{_CLOSE}"


def _slot_values(data: ReminderEmail) -> dict[str, str]:
    """The per-mail strings, by slot name."""
    values = {
        "public_id": data.token_public_id,
        "client": data.client_name,
        "label": data.token_label,
        "prefix": data.token_prefix,
        "url": data.action_url,
        "rcpt": data.recipient,
        "link": data.personal_link,
        "pending_date": data.pending_date,
        "pending_url": data.pending_url,
        "prefill_date": data.prefill_date,
    }
    for i, (code, label) in enumerate(data.privileges):
        values[f"pc{i}"], values[f"pl{i}"] = code, label
    return values


def _shape(data: ReminderEmail, prefix: str) -> tuple:
    """What the rendered text depends on besides the slot values."""
    return (
        prefix,
        data.route,
        data.threshold,
        data.days_left,
        data.expires_on,
        data.admins_fallback,
        bool(data.token_label),
        len(data.privileges),
        bool(data.personal_link),
        data.other_recipients,
        data.pending_state,
        data.pending_kind,
        bool(data.pending_date),
        bool(data.pending_url),
        bool(data.prefill_date),
        data.prefill_fields,
        data.prefill_missing,
        translation.get_language(),
        settings.SITE_URL,
    )


def _slotted(data: ReminderEmail) -> ReminderEmail:
    return replace(
        data,
        token_public_id=_slot("public_id"),
        client_name=_slot("client"),
        token_label=_slot("label") if data.token_label else "",
        token_prefix=_slot("prefix"),
        action_url=_slot("url"),
        privileges=[(_slot(f"pc{i}"), _slot(f"pl{i}")) for i in range(len(data.privileges))],
        recipient=_slot("rcpt"),
        personal_link=_slot("link") if data.personal_link else "",
        pending_date=_slot("pending_date") if data.pending_date else "",
        pending_url=_slot("pending_url") if data.pending_url else "",
        prefill_date=_slot("prefill_date") if data.prefill_date else "",
    )


def _cut(rendered: str) -> list | None:
    """Literal text and (slot, escaped) pieces; None when a marker was altered (the template transformed a value)."""
    pieces: list = []
    pos = 0
    for match in _SLOT_RE.finditer(rendered):
        pieces.append(rendered[pos : match.start()])
        pieces.append((match.group(2), match.group(1) != _PROBE))
        pos = match.end()
    pieces.append(rendered[pos:])
    if any(isinstance(p, str) and (_OPEN in p or _CLOSE in p) for p in pieces):
        return None
    return pieces


def _fill(pieces: list, values: dict[str, str]) -> str:
    return "".join(
        p if isinstance(p, str) else (conditional_escape(values[p[0]]) if p[1] else values[p[0]])
        for p in pieces
    )


def _render(data: ReminderEmail, prefix: str) -> list[str]:
    key = _shape(data, prefix)
    skeleton = _skeletons.get(key, False)
    if skeleton is False:
        full = _render_full(data, prefix)
        cut = [_cut(part) for part in _render_full(_slotted(data), prefix)]
        skeleton = None if None in cut else cut
        if skeleton is not None:
            values = _slot_values(data)
            if [_fill(pieces, values) for pieces in skeleton] != full:
                skeleton = None
        if skeleton is None:
            logger.warning(
                "reminder email %s: template transforms a per-mail value, rendered in full", key[:3]
            )
        if len(_skeletons) >= _MAX_SKELETONS:
            _skeletons.clear()
        _skeletons[key] = skeleton
        return full
    if skeleton is None:
        return _render_full(data, prefix)
    values = _slot_values(data)
    return [_fill(pieces, values) for pieces in skeleton]


def render_parts(data: ReminderEmail, prefix: str = TEMPLATE_PREFIX) -> tuple[str, str, str]:
    with translation.override("fr"):
        rendered = _render(data, prefix)
    subject = " ".join(rendered[0].split())
    return subject, rendered[1].strip() + "\n", rendered[2]


# -- messages --------------------------------------------------------------------------------------------------------
class ReminderMessage(EmailMultiAlternatives):
    """An outbox email (reminder, evolution notice): Django's message, sent with the backend's send_messages."""


def message_id(key: str) -> str:
    """The Message-ID of the outbox message `key`: the same at every attempt, so that a message re-sent after its
    worker died between the SMTP server's acceptance and the record of it is recognisably the same message (mail
    clients show it once); keyed with SECRET_KEY so that it is unique across installations and reveals nothing."""
    digest = hmac.new(settings.SECRET_KEY.encode(), key.encode(), hashlib.sha256).hexdigest()[:20]
    return f"<{key}.{digest}@{_domain()}>"


def _domain() -> str:
    return urlsplit(settings.SITE_URL).hostname or "tokenmgr.localhost"


def build_message(data: ReminderEmail, connection=None, msgid: str | None = None) -> ReminderMessage:
    subject, text, html = render_parts(data)
    message = ReminderMessage(
        subject=subject,
        body=text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[data.recipient],
        connection=connection,
        headers={
            "Message-ID": msgid or make_msgid(domain=_domain()),
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
        recipient="contact@example.org",
        action_url=url,
        personal_link=url + "?sesame=x",
        other_recipients=1,
        prefill_fields=("l'organisation", "les privilèges"),
        prefill_missing=("la description du projet",),
    )
