"""A hand-written iCalendar (RFC 5545) feed: one all-day event per token expiry and per reminder date.

The reminder events are the token page's timeline's (notifications.rules.reminders_shown): a token whose renewal
was declined, revoked or superseded has no reminder still to come."""

import datetime as dt
from collections.abc import Iterable

from django.conf import settings
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext as _

from notifications.rules import reminder_plans, reminders_shown
from tokens import validity
from tokens.models import Token
from tokens.privilege_display import privilege_text

PRODID = "-//tokenmgr//Echeances des jetons//FR"


def escape_text(value: str) -> str:
    """TEXT escaping (RFC 5545 §3.3.11): backslash, semicolon, comma, newlines."""
    return (
        value.replace("\\", "\\\\")
        .replace(";", "\\;")
        .replace(",", "\\,")
        .replace("\r\n", "\\n")
        .replace("\n", "\\n")
        .replace("\r", "\\n")
    )


def fold(line: str) -> str:
    """Fold a content line at 75 octets (UTF-8), never inside a character; continuation lines start with a space."""
    data = line.encode()
    if len(data) <= 75:
        return line
    parts, current, size, limit = [], [], 0, 75
    for char in line:
        width = len(char.encode())
        if size + width > limit:
            parts.append("".join(current))
            current, size, limit = [], 0, 74  # continuation lines carry a leading space
        current.append(char)
        size += width
    parts.append("".join(current))
    return "\r\n ".join(parts)


def _date(day: dt.date) -> str:
    return day.strftime("%Y%m%d")


def _stamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def _event(uid: str, day: dt.date, summary: str, description: str, url: str, stamp: str) -> list[str]:
    return [
        "BEGIN:VEVENT",
        f"UID:{uid}",
        f"DTSTAMP:{stamp}",
        f"DTSTART;VALUE=DATE:{_date(day)}",
        f"DTEND;VALUE=DATE:{_date(day + dt.timedelta(days=1))}",
        f"SUMMARY:{escape_text(summary)}",
        f"DESCRIPTION:{escape_text(description)}",
        f"URL:{url}",
        "TRANSP:TRANSPARENT",
        "END:VEVENT",
    ]


def calendar_for_tokens(tokens: Iterable[Token], *, now: dt.datetime | None = None, host: str = "") -> str:
    """The feed's text. UIDs are stable (token public id + what), so calendars update events in place."""
    now = now or timezone.now()
    stamp = _stamp(now)
    host = host or "tokenmgr"
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        f"PRODID:{PRODID}",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        f"X-WR-CALNAME:{escape_text(_('Échéances des jetons API'))}",
        f"X-WR-TIMEZONE:{settings.TIME_ZONE}",
        "REFRESH-INTERVAL;VALUE=DURATION:PT12H",
    ]
    tokens = list(tokens)
    plans = reminder_plans(tokens, today=validity.local_date(now))
    for token in tokens:
        name = token.label or token.secret_prefix
        expiry_day = validity.local_date(token.expires_at)
        url = f"{settings.SITE_URL}/jetons/{token.public_id}/"
        privileges = ", ".join(privilege_text(p) for p in token.privileges.all())
        base = f"{token.client.name} ({token.client.siret}) — {name} ({token.secret_prefix}…)"
        lines += _event(
            f"{token.public_id}-expiry@{host}",
            expiry_day,
            _("Expiration du jeton %(name)s — %(client)s") % {"name": name, "client": token.client.name},
            f"{base}\n" + _("Privilèges : %(p)s") % {"p": privileges} + f"\n{url}",
            url,
            stamp,
        )
        for step in reminders_shown(plans[token.pk][0]):
            lines += _event(
                f"{token.public_id}-reminder-{step.threshold}@{host}",
                step.day,
                _("Rappel J-%(n)s : jeton %(name)s — %(client)s")
                % {"n": step.threshold, "name": name, "client": token.client.name},
                f"{base}\n"
                + _("Expire le %(day)s. Pensez à le renouveler.")
                % {"day": date_format(expiry_day, "SHORT_DATE_FORMAT")}
                + f"\n{url}",
                url,
                stamp,
            )
    lines.append("END:VCALENDAR")
    return "".join(fold(line) + "\r\n" for line in lines)
