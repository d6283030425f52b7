"""The reminder rule, in one place: thresholds, eligibility, horizon, and the plan of one token.

On a day with 0 < days_left ≤ max(REMINDER_DAYS), a token is *due* for the smallest threshold ≥ days_left, unless a
reminder for that threshold or a smaller one is already pending, being sent or sent for its current expiry
(docs/domain.md). A token is eligible while it is neither revoked, nor superseded by a renewal, nor declined by its
holders ("ce jeton n'est plus utilisé").

The same rule has two faces that must never drift apart (tests/notifications/test_rule_drift.py checks, day by
day, that they agree): `due_tokens_filter`, a QuerySet the daily sweep pages through, and `reminder_plan`, the
Python plan of one token that the portal's pages and the calendar feed show.
"""

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Case, Exists, OuterRef, PositiveSmallIntegerField, QuerySet, Value, When

from tokens import validity
from tokens.models import Token

from .models import Reminder, ReminderOptOut, ReminderStatus

# Ledger rows that count as "already sent" for the rule: a pending one is about to be sent.
BLOCKING_STATUSES = (ReminderStatus.PENDING, ReminderStatus.SENDING, ReminderStatus.SENT)


def thresholds() -> list[int]:
    """REMINDER_DAYS, ascending."""
    return sorted(settings.REMINDER_DAYS)


def horizon_days() -> int:
    """How many days before expiry the first reminder may go: the largest threshold."""
    return thresholds()[-1]


def last_threshold() -> int:
    """The last reminder before expiry (the smallest threshold)."""
    return thresholds()[0]


def due_threshold(days_left: int) -> int | None:
    """The threshold a token `days_left` days from expiry is due for, or None outside (0, horizon]."""
    if days_left <= 0:
        return None
    return next((t for t in thresholds() if t >= days_left), None)


# ---------------------------------------------------------------------------------------------------------------
# Eligibility
# ---------------------------------------------------------------------------------------------------------------
def reminders_declined_token_ids(ids: Iterable[int]) -> set[int]:
    """Among token ids `ids`, those whose holders declined renewal: no reminder goes for them."""
    ids = list(ids)
    if not ids:
        return set()
    return set(ReminderOptOut.objects.filter(token_id__in=ids).values_list("token_id", flat=True))


def eligible_tokens(qs: QuerySet) -> QuerySet:
    """`qs` reduced to the tokens reminders are about: not revoked, not superseded, not declined."""
    return qs.filter(revoked_at__isnull=True, renewed_by__isnull=True).exclude(reminder_opt_out__isnull=False)


def token_is_eligible(token: Token, *, declined: bool) -> bool:
    """eligible_tokens() for one token already in memory."""
    return token.revoked_at is None and token.renewed_by_id is None and not declined


def ineligibility(reminder: Reminder, token: Token, now: dt.datetime, declined: bool = False) -> str:
    """Why a queued reminder must not be sent any more ('' if it still must): checked again at delivery."""
    if declined:
        return "renouvellement décliné par le titulaire"
    if token.revoked_at is not None:
        return "jeton révoqué"
    if token.expires_at <= now:
        return "jeton expiré"
    if token.renewed_by_id is not None:
        return "jeton remplacé par un renouvellement"
    if token.expires_at != reminder.expires_at:
        return "date d'expiration modifiée"
    return ""


# ---------------------------------------------------------------------------------------------------------------
# The rule in SQL (the sweep)
# ---------------------------------------------------------------------------------------------------------------
def due_threshold_expression(today: dt.date) -> Case:
    """due_threshold() of each token's expiry day as seen on `today`, on an indexed range of expires_at."""
    return Case(
        *[
            When(expires_at__lt=validity.start_of_day(today + dt.timedelta(days=t + 1)), then=Value(t))
            for t in thresholds()
        ],
        output_field=PositiveSmallIntegerField(),
    )


def due_tokens_filter(qs: QuerySet, *, today: dt.date) -> QuerySet:
    """The tokens of `qs` due on `today`, annotated with `due_threshold`."""
    start = validity.start_of_day(today + dt.timedelta(days=1))
    end = validity.start_of_day(today + dt.timedelta(days=horizon_days() + 1))
    # A smaller or equal threshold already pending or sent blocks; so does any row of the due threshold itself
    # (failed or cancelled: the ledger's unique constraint would make its insert a no-op), an exact probe of
    # that constraint's index.
    blocking = Reminder.objects.filter(
        token_id=OuterRef("pk"),
        expires_at=OuterRef("expires_at"),
        threshold__lte=OuterRef("due_threshold"),
        status__in=BLOCKING_STATUSES,
    )
    taken = Reminder.objects.filter(
        token_id=OuterRef("pk"), threshold=OuterRef("due_threshold"), expires_at=OuterRef("expires_at")
    )
    return (
        eligible_tokens(qs)
        .expiring_between(start, end)
        .annotate(due_threshold=due_threshold_expression(today))
        .filter(~Exists(blocking), ~Exists(taken))
    )


# ---------------------------------------------------------------------------------------------------------------
# The rule in Python (one token's plan)
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReminderStep:
    threshold: int
    day: dt.date
    state: str  # "sent" | "pending" | "failed" | "due" | "planned" | "skipped" | "none"
    reminder: Reminder | None = None  # the ledger row, if any


# Steps of a plan that are still to come.
TO_COME_STATES = ("due", "planned")
# Steps of a plan that are shown (timeline, calendar): what was done (or passed unsent) and what is still to come.
SHOWN_STATES = ("sent", "pending", "failed", "skipped", *TO_COME_STATES)


def reminder_rows_by_token(token_ids: Iterable[int]) -> dict[int, list[Reminder]]:
    """Ledger rows of each token (any expiry), newest first: one query."""
    ids = list(token_ids)
    if not ids:
        return {}
    rows: dict[int, list[Reminder]] = defaultdict(list)
    for row in Reminder.objects.filter(token_id__in=ids).order_by("-sent_at", "-id"):
        rows[row.token_id].append(row)
    return rows


def reminder_plan(
    token: Token, rows: list[Reminder], *, today: dt.date | None = None, declined: bool = False
) -> list[ReminderStep]:
    """Every threshold for the token's current expiry, largest first, with what happened or will happen."""
    today = today or validity.today()
    expiry_day = validity.local_date(token.expires_at)
    left = (expiry_day - today).days
    current: dict[int, Reminder] = {}
    for row in rows:
        if row.expires_at == token.expires_at:
            current.setdefault(int(row.threshold), row)
    taken = [t for t, r in current.items() if r.status in BLOCKING_STATUSES]
    floor = min(taken) if taken else None
    eligible = token_is_eligible(token, declined=declined)
    due_now = due_threshold(left) if eligible else None
    steps = []
    for threshold in reversed(thresholds()):
        day = expiry_day - dt.timedelta(days=threshold)
        row = current.get(threshold)
        if row is not None:
            state = row.status
            if state == ReminderStatus.SENDING:  # claimed by a delivery worker right now: shown as pending
                state = ReminderStatus.PENDING
            state = state if state in ("sent", "pending", "failed") else "none"
        elif floor is not None and threshold >= floor:
            state = "skipped"
        elif not eligible or left <= 0:
            state = "none"
        elif threshold == due_now:
            state, day = "due", today
        elif threshold < left:
            state = "planned"
        else:
            state = "skipped"
        steps.append(ReminderStep(threshold=threshold, day=day, state=str(state), reminder=row))
    return steps


def next_reminder(steps: list[ReminderStep]) -> ReminderStep | None:
    upcoming = reminders_to_come(steps)
    return min(upcoming, key=lambda s: s.day) if upcoming else None


def reminders_to_come(steps: list[ReminderStep]) -> list[ReminderStep]:
    """The reminders still to come of a plan (due today or planned)."""
    return [s for s in steps if s.state in TO_COME_STATES]


def reminders_shown(steps: list[ReminderStep]) -> list[ReminderStep]:
    """The reminders the token page's timeline and the calendar feed show: done, and still to come."""
    return [s for s in steps if s.state in SHOWN_STATES]


def reminder_plans(
    tokens: list[Token], *, today: dt.date | None = None
) -> dict[int, tuple[list[ReminderStep], bool]]:
    """(plan, declined) of each token, in two queries whatever their number."""
    today = today or validity.today()
    ids = [t.pk for t in tokens]
    ledger = reminder_rows_by_token(ids)
    declined = reminders_declined_token_ids(ids)
    return {
        t.pk: (
            reminder_plan(t, ledger.get(t.pk, []), today=today, declined=t.pk in declined),
            t.pk in declined,
        )
        for t in tokens
    }
