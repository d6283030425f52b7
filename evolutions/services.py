"""Every write on evolutions: publication (with its notices queued), correction by revision, notice delivery.

Publication is one transaction: the entry becomes published (revision 1, kept), and each person (normalized address
of a contact) holding an active token one of whose privileges grants an affected endpoint gets the entry attached
to their notice of the digest day: one `EvolutionNotice` per (email, digest_on), whatever the number of their tokens
or of the day's entries. The digest day is today in TIME_ZONE, or tomorrow from EVOLUTION_DIGEST_HOUR on; the notice
is due at that hour. A notice already claimed by a delivery when an entry is attached is not reopened: the entry
goes to the next day's notice (the pending rows are locked before attaching, so a claim and an attachment never
cross).

Delivery is the email outbox loop of the reminders (notifications.mailer.deliver): claim due notices under a lease
with SKIP LOCKED in a short transaction, send each message on its own, record its outcome right after the send (a
killed worker re-sends at most the one in flight, under the same Message-ID), failed sends retry with backoff, then
`failed`. What is the notices' own: the batch's plan (entries and affected tokens of each person) and the digest.
"""

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage
from django.db import transaction
from django.db.models import F
from django.urls import reverse
from django.utils import timezone, translation

from accounts.identity import normalize_email_or_none
from notifications.mailer import DeliveryResult, EmailOutbox, deliver, outbox_email
from tokens import validity
from tokens.models import Contact, Endpoint, Privilege, Token

from .models import (
    Evolution,
    EvolutionNotice,
    EvolutionNoticeEntry,
    EvolutionRevision,
    EvolutionStatus,
    NoticeStatus,
)

logger = logging.getLogger(__name__)

_CHUNK = 500  # addresses per statement (SQLite's limit on parameters)
EDITABLE_FIELDS = ("kind", "title", "body", "effective_on", "deprecation_at", "sunset_at")


class EvolutionError(Exception):
    def __init__(self, message: str, *, code: str):
        super().__init__(message)
        self.code = code


# ------------------------------------------------------------------------------------------------------------------
# Validation and revisions
# ------------------------------------------------------------------------------------------------------------------
def evolution_dates_check(*, deprecation_at: dt.datetime | None, sunset_at: dt.datetime | None) -> None:
    """A removal has both dates, the sunset not before the deprecation."""
    if sunset_at is not None and deprecation_at is None:
        raise ValidationError(
            {"deprecation_at": "Un retrait (Sunset) s'annonce d'abord par une date de dépréciation."},
            code="sunset_without_deprecation",
        )
    if sunset_at is not None and deprecation_at is not None and sunset_at < deprecation_at:
        raise ValidationError(
            {"sunset_at": "La date de retrait (Sunset) ne peut précéder la date de dépréciation."},
            code="sunset_before_deprecation",
        )


def _snapshot(evolution: Evolution, *, number: int, note: str, by, now: dt.datetime) -> EvolutionRevision:
    return EvolutionRevision.objects.create(
        evolution=evolution,
        number=number,
        kind=evolution.kind,
        title=evolution.title,
        body=evolution.body,
        endpoints=sorted(evolution.endpoints.values_list("path", flat=True)),
        effective_on=evolution.effective_on,
        deprecation_at=evolution.deprecation_at,
        sunset_at=evolution.sunset_at,
        note=note,
        created_by=by,
        created_at=now,
    )


def digest_day(now: dt.datetime) -> dt.date:
    """The digest an entry published at `now` goes into: today, or tomorrow from EVOLUTION_DIGEST_HOUR on."""
    local = now.astimezone(validity.local_tz())
    day = local.date()
    return day if local.hour < settings.EVOLUTION_DIGEST_HOUR else day + dt.timedelta(days=1)


def digest_due(day: dt.date) -> dt.datetime:
    """When the digest of `day` is sent: EVOLUTION_DIGEST_HOUR that day, in TIME_ZONE."""
    local = dt.datetime.combine(day, dt.time(hour=settings.EVOLUTION_DIGEST_HOUR)).replace(
        tzinfo=validity.local_tz()
    )
    return local.astimezone(dt.UTC)


# ------------------------------------------------------------------------------------------------------------------
# Publication
# ------------------------------------------------------------------------------------------------------------------
def affected_tokens(*, endpoint_ids: Iterable[int], now: dt.datetime | None = None):
    """Active tokens one of whose privileges grants one of these endpoints (a subquery, not evaluated)."""
    privileges = Privilege.objects.filter(endpoints__in=list(endpoint_ids)).values("pk")
    return Token.objects.active(now).filter(privileges__in=privileges).values("pk")


def affected_people(*, endpoint_ids: Iterable[int], now: dt.datetime | None = None) -> list[str]:
    """Normalized addresses of the contacts of the affected tokens, each once (invalid addresses left out)."""
    emails = (
        Contact.objects.filter(tokens__in=affected_tokens(endpoint_ids=endpoint_ids, now=now))
        .values_list("email", flat=True)
        .distinct()
    )
    return sorted({a for a in (normalize_email_or_none(e) for e in emails.iterator()) if a})


def _attach(*, evolution_ids: list[int], emails: list[str], now: dt.datetime) -> int:
    """Attach the entries to each person's notice of the digest day (created if needed); returns the notices."""
    day = digest_day(now)
    remaining = list(emails)
    touched = 0
    while remaining:
        due = max(digest_due(day), now)
        late: list[str] = []
        for start in range(0, len(remaining), _CHUNK):
            chunk = remaining[start : start + _CHUNK]
            EvolutionNotice.objects.bulk_create(
                [
                    EvolutionNotice(
                        email=e, digest_on=day, next_attempt_at=due, created_at=now, updated_at=now
                    )
                    for e in chunk
                ],
                ignore_conflicts=True,
            )
            # Locked: a delivery cannot claim them until the entries are attached (and committed).
            open_notices = dict(
                EvolutionNotice.objects.filter(digest_on=day, email__in=chunk, status=NoticeStatus.PENDING)
                .select_for_update()
                .values_list("email", "pk")
            )
            EvolutionNoticeEntry.objects.bulk_create(
                [
                    EvolutionNoticeEntry(notice_id=pk, evolution_id=ev)
                    for pk in open_notices.values()
                    for ev in evolution_ids
                ],
                ignore_conflicts=True,
            )
            touched += len(open_notices)
            late += [e for e in chunk if e not in open_notices]
        remaining, day = late, day + dt.timedelta(days=1)
    return touched


@dataclass(frozen=True)
class PublishResult:
    evolution: Evolution
    notices: int  # people told (notices the entry was attached to)


def evolution_publish(*, evolution: Evolution, by=None, now: dt.datetime | None = None) -> PublishResult:
    """Publish a draft: revision 1 kept, the affected people's notices queued in the same transaction."""
    now = now or timezone.now()
    with transaction.atomic():
        evolution = Evolution.objects.select_for_update().get(pk=evolution.pk)
        if evolution.status != EvolutionStatus.DRAFT:
            raise EvolutionError("Cette évolution est déjà publiée.", code="already_published")
        evolution_dates_check(deprecation_at=evolution.deprecation_at, sunset_at=evolution.sunset_at)
        evolution.status = EvolutionStatus.PUBLISHED
        evolution.published_at = now
        evolution.revision = 1
        evolution.updated_at = now
        evolution.save(update_fields=["status", "published_at", "revision", "updated_at"])
        _snapshot(evolution, number=1, note="", by=by, now=now)
        endpoint_ids = list(evolution.endpoints.values_list("pk", flat=True))
        emails = affected_people(endpoint_ids=endpoint_ids, now=now) if endpoint_ids else []
        notices = _attach(evolution_ids=[evolution.pk], emails=emails, now=now)
    logger.info("evolution %s published: %d people to tell", evolution.public_id, notices)
    return PublishResult(evolution=evolution, notices=notices)


def evolution_correct(
    *,
    evolution: Evolution,
    note: str,
    by=None,
    endpoints: Iterable[Endpoint] | None = None,
    now: dt.datetime | None = None,
    **changes,
) -> Evolution:
    """Correct a published entry: the changes and a new revision (with its note) in one transaction.

    Nothing changed: nothing written. A correction needs a note: it is shown with the entry ("corrigé le …").
    """
    unknown = set(changes) - set(EDITABLE_FIELDS)
    if unknown:
        raise EvolutionError(f"Champs inconnus : {', '.join(sorted(unknown))}.", code="unknown_field")
    now = now or timezone.now()
    with transaction.atomic():
        evolution = Evolution.objects.select_for_update().get(pk=evolution.pk)
        if evolution.status != EvolutionStatus.PUBLISHED:
            raise EvolutionError("Seule une évolution publiée se corrige.", code="not_published")
        changed = {k: v for k, v in changes.items() if getattr(evolution, k) != v}
        new_endpoints = None
        if endpoints is not None:
            wanted = {e.pk for e in endpoints}
            if wanted != set(evolution.endpoints.values_list("pk", flat=True)):
                new_endpoints = wanted
        if not changed and new_endpoints is None:
            return evolution
        if not (note or "").strip():
            raise EvolutionError("Indiquez le motif de la correction.", code="note_required")
        for field, value in changed.items():
            setattr(evolution, field, value)
        evolution_dates_check(deprecation_at=evolution.deprecation_at, sunset_at=evolution.sunset_at)
        evolution.revision = F("revision") + 1
        evolution.corrected_at = now
        evolution.updated_at = now
        evolution.save()
        evolution.refresh_from_db(fields=["revision"])
        if new_endpoints is not None:
            evolution.endpoints.set(new_endpoints)
        _snapshot(evolution, number=evolution.revision, note=note.strip(), by=by, now=now)
    return evolution


# ------------------------------------------------------------------------------------------------------------------
# Delivery
# ------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TokenLine:
    public_id: str
    client_name: str
    label: str
    prefix: str
    expires_on: dt.date
    url: str


@dataclass(frozen=True)
class EntryLine:
    public_id: str
    kind: str
    title: str
    effective_on: dt.date
    deprecation_at: dt.datetime | None
    sunset_at: dt.datetime | None
    url: str
    endpoints: list[str]
    tokens: list[TokenLine]  # the recipient's tokens it affects


def _plan(notices: list[EvolutionNotice], now: dt.datetime) -> dict[int, list[EntryLine]]:
    """For each notice, its published entries with the recipient's active tokens each affects (a constant number
    of queries per batch)."""
    links = list(
        EvolutionNoticeEntry.objects.filter(
            notice_id__in=[n.pk for n in notices], evolution__status=EvolutionStatus.PUBLISHED
        ).values_list("notice_id", "evolution_id")
    )
    entries = {
        e.pk: e
        for e in Evolution.objects.filter(pk__in={ev for _, ev in links}).prefetch_related("endpoints")
    }
    privileges_of_entry: dict[int, set[int]] = defaultdict(set)
    for ev, priv in Evolution.endpoints.through.objects.filter(
        evolution_id__in=list(entries), endpoint__privileges__isnull=False
    ).values_list("evolution_id", "endpoint__privileges"):
        privileges_of_entry[ev].add(priv)
    all_privileges = set().union(*privileges_of_entry.values()) if privileges_of_entry else set()
    emails = {n.email for n in notices}
    # Contacts are stored normalized: the recipient's address is the contact's address.
    holders = list(
        Token.contacts.through.objects.filter(
            contact__email__in=emails,
            token__in=Token.objects.active(now).filter(privileges__in=all_privileges).values("pk"),
        ).values_list("contact__email", "token_id")
    )
    tokens_of_email: dict[str, set[int]] = defaultdict(set)
    for email, token_id in holders:
        tokens_of_email[email].add(token_id)
    token_ids = set().union(*tokens_of_email.values()) if tokens_of_email else set()
    tokens = {t.pk: t for t in Token.objects.filter(pk__in=token_ids).select_related("client")}
    privileges_of_token: dict[int, set[int]] = defaultdict(set)
    for token_id, priv in Token.privileges.through.objects.filter(
        token_id__in=token_ids, privilege_id__in=all_privileges
    ).values_list("token_id", "privilege_id"):
        privileges_of_token[token_id].add(priv)

    entries_of_notice: dict[int, list[int]] = defaultdict(list)
    for notice_id, ev in links:
        entries_of_notice[notice_id].append(ev)
    plan: dict[int, list[EntryLine]] = {}
    for notice in notices:
        lines = []
        for ev in sorted(entries_of_notice.get(notice.pk, []), key=lambda i: (entries[i].published_at, i)):
            entry = entries[ev]
            hit = sorted(
                (
                    tokens[t]
                    for t in tokens_of_email.get(notice.email, ())
                    if privileges_of_token[t] & privileges_of_entry[ev]
                ),
                key=lambda t: (t.client.name, t.label, t.pk),
            )
            if not hit:
                continue
            lines.append(
                EntryLine(
                    public_id=str(entry.public_id),
                    kind=entry.get_kind_display(),
                    title=entry.title,
                    effective_on=entry.effective_on,
                    deprecation_at=entry.deprecation_at,
                    sunset_at=entry.sunset_at,
                    url=settings.SITE_URL + reverse("evolution_detail", args=[entry.public_id]),
                    endpoints=sorted(e.path for e in entry.endpoints.all()),
                    tokens=[
                        TokenLine(
                            public_id=str(t.public_id),
                            client_name=t.client.name,
                            label=t.label,
                            prefix=t.secret_prefix,
                            expires_on=validity.local_date(t.expires_at),
                            url=settings.SITE_URL + reverse("portal_token", args=[t.public_id]),
                        )
                        for t in hit
                    ],
                )
            )
        plan[notice.pk] = lines
    return plan


def build_message(notice: EvolutionNotice, lines: list[EntryLine], connection=None) -> EmailMessage:
    """One person's digest: the day's entries and, under each, which of their tokens it affects."""
    tokens = list({t.public_id: t for line in lines for t in line.tokens}.values())
    context = {
        "notice": notice,
        "entries": lines,
        "tokens": tokens,
        "recipient": notice.email,
        "page_url": settings.SITE_URL + reverse("evolutions"),
    }
    with translation.override("fr"):
        return outbox_email(
            "emails/evolution_digest",
            context,
            row=notice,
            key="evolution",
            connection=connection,
            headers={
                "X-Evolution-Digest": notice.digest_on.isoformat(),
                "X-Evolution-Ids": ",".join(line.public_id for line in lines),
                "Auto-Submitted": "auto-generated",
            },
        )


def _build(notice: EvolutionNotice, plan: dict[int, list[EntryLine]], connection) -> EmailMessage:
    return build_message(notice, plan[notice.pk], connection)


def _cancel_reason(notice: EvolutionNotice, plan: dict[int, list[EntryLine]]) -> str:
    return "" if plan.get(notice.pk) else "plus aucun jeton actif concerné"


def _sent_fields(notice: EvolutionNotice, plan: dict[int, list[EntryLine]]) -> dict:
    return {"tokens": sorted({t.public_id for line in plan[notice.pk] for t in line.tokens})}


KIND = EmailOutbox(
    model=EvolutionNotice,
    label="evolution notice",
    build=_build,
    context=_plan,
    cancel=_cancel_reason,
    sent_fields=_sent_fields,
)
OUTBOX = KIND.outbox


def evolution_notices_deliver(
    *, now: dt.datetime | None = None, batch_size: int | None = None, max_batches: int | None = None
) -> DeliveryResult:
    """Send the due notices (and those crashed workers left behind), batch by batch, until none is left."""
    return deliver(KIND, now=now, batch_size=batch_size, max_batches=max_batches)


def evolution_notices_requeue(*, notice_ids: Iterable[int]) -> int:
    """Put failed notices back in the outbox, due now, with a fresh attempt count."""
    return EvolutionNotice.objects.filter(pk__in=list(notice_ids)).requeue()
