"""Reads of the integrator's portal: dashboard rows, reminder plans, token history.

Issues 3 and 4 add the reminder ledger (notifications.Reminder) and access requests (tokens.AccessRequest);
they are looked up at run time so that the portal works before and after they land.
"""

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlencode

from django.apps import apps
from django.conf import settings
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from tokens import validity
from tokens.models import Client, ClientMembership, Token, TokenStatus, status_expression

from .models import ReminderOptOut, WebhookDelivery

PENDING_REQUEST_STATES = ("draft", "submitted", "changes_requested")
REMINDER_TAKEN_STATES = (
    "pending",
    "sending",
    "sent",
)  # a ledger row in these states means "this threshold is done"


# ---------------------------------------------------------------------------------------------------------------
# Optional models of the parallel issues
# ---------------------------------------------------------------------------------------------------------------
def _model(app_label: str, name: str):
    try:
        return apps.get_model(app_label, name)
    except LookupError:
        return None


def reminder_model():
    return _model("notifications", "Reminder")


def access_request_model():
    return _model("tokens", "AccessRequest")


def _field_names(model) -> set[str]:
    return {f.name for f in model._meta.get_fields()}


def _token_fk_names(model) -> list[str]:
    """Names of the model's foreign keys to Token (e.g. the token a request renews or extends)."""
    return [
        f.name
        for f in model._meta.get_fields()
        if (f.many_to_one or f.one_to_one) and f.concrete and getattr(f, "related_model", None) is Token
    ]


def _state_field(model) -> str | None:
    names = _field_names(model)
    return next((n for n in ("state", "status") if n in names), None)


# ---------------------------------------------------------------------------------------------------------------
# Opt-outs ("ce jeton n'est plus utilisé")
# ---------------------------------------------------------------------------------------------------------------
def reminders_declined_token_ids(ids: Iterable[int]) -> set[int]:
    """Among token ids `ids`, those whose holders declined renewal: the reminder sweep must skip them."""
    ids = list(ids)
    if not ids:
        return set()
    return set(ReminderOptOut.objects.filter(token_id__in=ids).values_list("token_id", flat=True))


def tokens_without_declined(qs: QuerySet) -> QuerySet:
    """`qs` minus the tokens whose renewal was declined (for the sweep's range query, as a subquery)."""
    return qs.exclude(reminder_opt_out__isnull=False)


# ---------------------------------------------------------------------------------------------------------------
# Reminder plan of one token
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReminderStep:
    threshold: int
    day: dt.date
    state: str  # "sent" | "pending" | "failed" | "due" | "planned" | "skipped" | "none"
    reminder: object = None  # the ledger row, if any


def reminder_rows_by_token(token_ids: Iterable[int]) -> dict[int, list]:
    """Ledger rows of each token (any expiry), newest first; {} before issue 3 lands."""
    model = reminder_model()
    ids = list(token_ids)
    if model is None or not ids:
        return {}
    rows: dict[int, list] = defaultdict(list)
    order = [f for f in ("-sent_at", "-id") if f.lstrip("-") in _field_names(model)]
    for row in model.objects.filter(token_id__in=ids).order_by(*order):
        rows[row.token_id].append(row)
    return rows


def _current_rows(token: Token, rows: list) -> dict[int, object]:
    """Ledger rows of the token's current expiry, by threshold."""
    current = {}
    for row in rows:
        if getattr(row, "expires_at", token.expires_at) != token.expires_at:
            continue
        current.setdefault(int(row.threshold), row)
    return current


def _taken(row) -> bool:
    return getattr(row, "status", "sent") in REMINDER_TAKEN_STATES


def reminder_plan(
    token: Token, rows: list, *, today: dt.date | None = None, declined: bool = False
) -> list[ReminderStep]:
    """Every threshold of REMINDER_DAYS for the token's current expiry, with what happened or will happen.

    Mirrors the reminder rule (docs/domain.md): on a day with 0 < days_left ≤ max, the smallest threshold ≥ days_left
    is sent unless it or a smaller one was already sent for this expiry.
    """
    today = today or validity.today()
    expiry_day = validity.local_date(token.expires_at)
    left = (expiry_day - today).days
    current = _current_rows(token, rows)
    taken = [t for t, r in current.items() if _taken(r)]
    floor = min(taken) if taken else None
    eligible = token.revoked_at is None and token.renewed_by_id is None and left > 0 and not declined
    due_now = None
    if eligible and left <= max(settings.REMINDER_DAYS):
        due_now = min(t for t in settings.REMINDER_DAYS if t >= left)
    steps = []
    for threshold in sorted(settings.REMINDER_DAYS, reverse=True):
        day = expiry_day - dt.timedelta(days=threshold)
        row = current.get(threshold)
        if row is not None:
            state = getattr(row, "status", "sent")
            if state == "sending":  # claimed by a delivery worker right now: shown as pending
                state = "pending"
            if state not in ("sent", "pending", "failed"):
                state = "none"
        elif floor is not None and threshold >= floor:
            state = "skipped"
        elif not eligible:
            state = "none"
        elif threshold == due_now:
            state, day = "due", today
        elif threshold < left:
            state = "planned"
        else:
            state = "skipped"
        steps.append(ReminderStep(threshold=threshold, day=day, state=state, reminder=row))
    return steps


def next_reminder(steps: list[ReminderStep]) -> ReminderStep | None:
    upcoming = [s for s in steps if s.state in ("due", "planned")]
    return min(upcoming, key=lambda s: s.day) if upcoming else None


# ---------------------------------------------------------------------------------------------------------------
# Pending access requests
# ---------------------------------------------------------------------------------------------------------------
def requests_by_token(token_ids: Iterable[int], *, pending_only: bool) -> dict[int, list]:
    model = access_request_model()
    ids = list(token_ids)
    if model is None or not ids:
        return {}
    fks = _token_fk_names(model)
    if not fks:
        return {}
    cond = Q()
    for name in fks:
        cond |= Q(**{f"{name}_id__in": ids})
    qs = model.objects.filter(cond)
    state = _state_field(model)
    if pending_only and state:
        qs = qs.filter(**{f"{state}__in": PENDING_REQUEST_STATES})
    result: dict[int, list] = defaultdict(list)
    for req in qs.order_by("-pk"):
        for name in fks:
            tid = getattr(req, f"{name}_id")
            if tid in ids and req not in result[tid]:
                result[tid].append(req)
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
            Q(label__icontains=q)
            | Q(secret_prefix__istartswith=q)
            | Q(client__name__icontains=q)
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
    ids = [t.pk for t in tokens]
    ledger = reminder_rows_by_token(ids)
    declined = reminders_declined_token_ids(ids)
    pending = requests_by_token(ids, pending_only=True)
    rows = []
    for token in tokens:
        steps = reminder_plan(token, ledger.get(token.pk, []), today=today, declined=token.pk in declined)
        rows.append(
            DashboardRow(
                token=token,
                days_left=(validity.local_date(token.expires_at) - today).days,
                steps=steps,
                next_reminder=next_reminder(steps),
                declined=token.pk in declined,
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


def webhook_delivery_counts_by_status() -> dict[str, int]:
    """How many webhook deliveries are in each state, every state listed: one aggregate query."""
    counts = dict.fromkeys(WebhookDelivery.Status.values, 0)
    counts.update(WebhookDelivery.objects.order_by().values_list("status").annotate(count=Count("pk")))
    return counts
