"""Reads of the integrator's portal: dashboard rows, reminder plans, token history."""

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlencode

from django.db.models import Count, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from notifications.rules import (
    ReminderStep,
    next_reminder,
    reminder_plan,
    reminder_plans,
    reminder_rows_by_token,
    reminders_declined_token_ids,
    reminders_shown,
)
from tokenmgr import search
from tokens import validity
from tokens.models import AccessRequest, Client, ClientMembership, Token, TokenStatus, status_expression

__all__ = [
    "ReminderStep",
    "next_reminder",
    "reminder_plan",
    "reminder_rows_by_token",
    "reminders_declined_token_ids",
    "reminders_shown",
]


# ---------------------------------------------------------------------------------------------------------------
# Access requests of tokens
# ---------------------------------------------------------------------------------------------------------------
def requests_by_token(token_ids: Iterable[int], *, pending_only: bool) -> dict[int, list[AccessRequest]]:
    """Access requests made for each token (renewal, extension, or the new request replacing a legacy token),
    newest first; only the open ones (draft, submitted, changes requested) with `pending_only`."""
    ids = list(token_ids)
    if not ids:
        return {}
    qs = AccessRequest.objects.filter(Q(token_id__in=ids) | Q(issued_token_id__in=ids))
    if pending_only:
        qs = qs.open()
    wanted = set(ids)
    result: dict[int, list[AccessRequest]] = defaultdict(list)
    for req in qs.order_by("-pk"):
        for token_id in dict.fromkeys((req.token_id, req.issued_token_id)):
            if token_id in wanted:
                result[token_id].append(req)
    return result


# ---------------------------------------------------------------------------------------------------------------
# Dashboard
# ---------------------------------------------------------------------------------------------------------------
SORTS = {
    "client": ("client__name", "expires_at", "id"),
    "label": ("label", "id"),
    "prefix": ("secret_prefix", "id"),
    "issued": ("issued_at", "id"),
    "expires": ("expires_at", "id"),
    "status": ("state", "expires_at", "id"),
    "origin": ("origin", "expires_at", "id"),
}
DEFAULT_SORT = "expires"


@dataclass
class DashboardFilters:
    client: int | None = None
    status: str = ""
    within: int | None = None
    origin: str = ""
    privilege: str = ""
    q: str = ""
    sort: str = DEFAULT_SORT


def user_clients(user, *, only_client: int | None = None) -> QuerySet:
    """The user's clients; only `only_client` in a session opened by a reminder's link (scoped to one client)."""
    qs = Client.objects.accessible_to(user)
    if only_client is not None:
        qs = qs.filter(pk=only_client)
    return qs.order_by("name", "id")


def user_tokens(user, *, now: dt.datetime | None = None, only_client: int | None = None) -> QuerySet:
    qs = Token.objects.for_user(user)
    if only_client is not None:
        qs = qs.filter(client_id=only_client)
    return qs.annotate(state=status_expression(now or timezone.now()))


# Status filter value for the tokens that work on the API right now (superseded ones still work until they expire).
IN_SERVICE = "in_service"
IN_SERVICE_STATES = (TokenStatus.ACTIVE.value, TokenStatus.EXPIRING.value, TokenStatus.SUPERSEDED.value)
# Tokens that reminders are about (Token.objects.active()): usable and not superseded.
_ACTIVE_STATES = (TokenStatus.ACTIVE.value, TokenStatus.EXPIRING.value)


def _state_filter(filters: DashboardFilters, *, today: dt.date) -> Q:
    """The status and expiry filters of the dashboard, on tokens annotated by user_tokens() (`state`)."""
    q = Q()
    if filters.status == IN_SERVICE:
        q &= Q(state__in=IN_SERVICE_STATES)
    elif filters.status:
        q &= Q(state=filters.status)
    if filters.within is not None:
        horizon = validity.start_of_day(today + dt.timedelta(days=filters.within + 1))
        q &= Q(state__in=_ACTIVE_STATES, expires_at__lt=horizon)
    return q


def dashboard_tokens(
    user, filters: DashboardFilters, *, now: dt.datetime | None = None, only_client: int | None = None
) -> QuerySet:
    now = now or timezone.now()
    qs = user_tokens(user, now=now, only_client=only_client).select_related("client")
    if filters.client:
        qs = qs.filter(client_id=filters.client)
    qs = qs.filter(_state_filter(filters, today=validity.local_date(now)))
    if filters.origin:
        qs = qs.filter(origin=filters.origin)
    if filters.privilege:
        qs = qs.filter(privileges__code=filters.privilege)
    if filters.q:
        q = filters.q.strip()
        qs = qs.filter(
            search.contains_any(["label", "client__name"], q)
            | Q(secret_prefix__istartswith=q)
            | Q(client__siret__startswith=q.replace(" ", ""))
        )
    key = filters.sort.lstrip("-")
    order = SORTS.get(key, SORTS[DEFAULT_SORT])
    if filters.sort.startswith("-"):
        order = tuple(f"-{f}" for f in order)
    return qs.order_by(*order)


@dataclass
class DashboardRow:
    token: Token
    days_left: int
    steps: list[ReminderStep]
    next_reminder: ReminderStep | None
    declined: bool
    pending_requests: list = field(default_factory=list)

    @property
    def days_ago(self) -> int:
        return -self.days_left


def dashboard_rows(tokens: list[Token], *, today: dt.date | None = None) -> list[DashboardRow]:
    """Decorate one page of tokens with their reminder plan and pending requests, in a constant number of queries."""
    today = today or validity.today()
    plans = reminder_plans(tokens, today=today)
    pending = requests_by_token([t.pk for t in tokens], pending_only=True)
    rows = []
    for token in tokens:
        steps, declined = plans[token.pk]
        rows.append(
            DashboardRow(
                token=token,
                days_left=(validity.local_date(token.expires_at) - today).days,
                steps=steps,
                next_reminder=next_reminder(steps),
                declined=declined,
                pending_requests=pending.get(token.pk, []),
            )
        )
    return rows


# The cards at the top of the dashboard: each counts the tokens that its link (these dashboard filters) lists.
DASHBOARD_CARDS: dict[str, dict[str, str | int]] = {
    "within_15": {"within": 15},
    "within_30": {"within": 30},
    "within_90": {"within": 90},
    "in_service": {"status": IN_SERVICE},
    "expired": {"status": TokenStatus.EXPIRED.value},
}


def dashboard_card_queries() -> dict[str, str]:
    """The query string of each card's link."""
    return {key: urlencode(params) for key, params in DASHBOARD_CARDS.items()}


def dashboard_counts(
    user, *, now: dt.datetime | None = None, only_client: int | None = None
) -> dict[str, int]:
    """The figures of the dashboard cards, in one query, by the very filters of the dashboard list."""
    now = now or timezone.now()
    today = validity.local_date(now)
    qs = user_tokens(user, now=now, only_client=only_client)
    return qs.aggregate(
        **{
            key: Count("id", filter=_state_filter(DashboardFilters(**params), today=today))
            for key, params in DASHBOARD_CARDS.items()
        }
    )


# ---------------------------------------------------------------------------------------------------------------
# Token page
# ---------------------------------------------------------------------------------------------------------------
def token_for_user(user, public_id) -> Token:
    """The token if it belongs to one of the user's clients; Token.DoesNotExist otherwise."""
    return (
        user_tokens(user)
        .select_related("client", "renewed_by", "revoked_by")
        .prefetch_related("privileges__endpoints", "contacts")
        .get(public_id=public_id)
    )


@dataclass(frozen=True)
class TimelineEntry:
    day: dt.date
    kind: str  # issued | reminder | expiry | revoked | declined
    label: str
    state: str = ""
    step: ReminderStep | None = None


def token_timeline(token: Token, steps: list[ReminderStep]) -> list[TimelineEntry]:
    """Issue, the reminders done and still to come (rules.reminders_shown, as the calendar feed), revocation,
    expiry; by day."""
    timeline = [TimelineEntry(validity.local_date(token.issued_at), "issued", _("Émission"))]
    for step in reminders_shown(steps):
        label = _("Rappel J-%(n)s") % {"n": step.threshold}
        timeline.append(TimelineEntry(step.day, "reminder", label, step.state, step))
    if token.revoked_at:
        timeline.append(TimelineEntry(validity.local_date(token.revoked_at), "revoked", _("Révocation")))
    timeline.append(TimelineEntry(validity.local_date(token.expires_at), "expiry", _("Expiration")))
    timeline.sort(key=lambda e: e.day)
    return timeline


def token_predecessors(token: Token) -> list[Token]:
    return list(Token.objects.filter(renewed_by=token).select_related("client"))


# ---------------------------------------------------------------------------------------------------------------
# Who has access
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClientAccess:
    client: Client
    memberships: list  # ClientMembership, with .user and .granted_by, each one giving access now


def client_accesses(user, *, only_client: int | None = None) -> list[ClientAccess]:
    """For each client the user may see, everyone who has access to it now and how (same rule as every page)."""
    clients = list(user_clients(user, only_client=only_client))
    by_client: dict[int, list] = defaultdict(list)
    memberships = (
        ClientMembership.objects.effective()
        .filter(client__in=[c.pk for c in clients])
        .select_related("user", "granted_by")
        .order_by("user__last_name", "user__first_name", "user__email")
    )
    for membership in memberships:
        by_client[membership.client_id].append(membership)
    return [ClientAccess(client=c, memberships=by_client[c.pk]) for c in clients]
