"""Integrator pages: parse input, call one selector or service, render."""

import datetime as dt

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from evolutions import selectors as evolution_selectors
from notifications import opt_outs, webhooks
from notifications.models import WebhookDelivery, WebhookEndpoint
from tokenmgr import ratelimit
from tokenmgr.errors import ApplicationError
from tokenmgr.pages import report_error
from tokenmgr.reauth import recent_auth_required
from tokens import credentials, exports, validity
from tokens.models import Client, Privilege, Token, TokenStatus
from tokens.request_actions import token_request_action
from tokens.selectors import TokenCheck, token_by_secret, token_check

from . import export, ics, selectors, services
from .forms import DashboardFilterForm, RevokeForm, SecretSearchForm, VerifyForm, WebhookForm
from .models import CalendarFeed


def _token_or_404(request, public_id) -> Token:
    try:
        return selectors.token_for_user(request.user, public_id)
    except Token.DoesNotExist:
        raise Http404 from None


def _only_client(request) -> int | None:
    """Set in a session opened by a reminder's login link: that client only (notifications.magic_links)."""
    return getattr(request, "magic_link_client_id", None)


def _crumbs(*items) -> list[tuple[str, str | None]]:
    return [(_("Tableau de bord"), reverse("portal_dashboard")), *items]


def _optional_url(name: str, **kwargs) -> str | None:
    try:
        return reverse(name, kwargs=kwargs)
    except NoReverseMatch:
        return None


# ---------------------------------------------------------------------------------------------------------------
# Dashboard
# ---------------------------------------------------------------------------------------------------------------
COLUMNS = [
    ("client", gettext_lazy("Client")),
    ("label", gettext_lazy("Libellé (origine)")),
    ("prefix", gettext_lazy("Préfixe")),
    (None, gettext_lazy("Privilèges")),
    ("issued", gettext_lazy("Émis le")),
    ("expires", gettext_lazy("Expire le (jours restants)")),
    ("status", gettext_lazy("Statut")),
    (None, gettext_lazy("Prochain rappel")),
    (None, gettext_lazy("Demande en cours")),
]


def _columns(current: str, base_query: str) -> list[dict]:
    columns = []
    prefix = f"?{base_query}&" if base_query else "?"
    for key, label in COLUMNS:
        col = {"label": label, "url": None, "aria_sort": None, "hint": ""}
        if key:
            sort_key = key
            if current == sort_key:
                col["aria_sort"], target = "ascending", f"-{sort_key}"
                col["hint"] = _("trié par ordre croissant, activer pour trier par ordre décroissant")
            elif current == f"-{sort_key}":
                col["aria_sort"], target = "descending", sort_key
                col["hint"] = _("trié par ordre décroissant, activer pour trier par ordre croissant")
            else:
                target = sort_key
                col["hint"] = _("activer pour trier")
            col["url"] = f"{prefix}sort={target}"
        columns.append(col)
    return columns


def _refuse_secret_in_query(request):
    """A whole secret typed in the search box: dropped from the address at once (it would stay in the browser's
    history and the server's access log), and the user is pointed to the search by secret (a POST)."""
    if not credentials.looks_like_full_secret(request.GET.get("q", "").strip()):
        return None
    messages.error(
        request,
        _(
            "Un jeton complet ne se cherche pas dans ce champ (il apparaîtrait dans l'adresse de la page) : "
            "collez-le dans « Rechercher par jeton complet »."
        ),
    )
    kept = request.GET.copy()
    kept.pop("q", None)
    url = reverse("portal_dashboard")
    return redirect(f"{url}?{kept.urlencode()}" if kept else url)


def _dashboard_list(request, *, now):
    """The filter form and the filtered, sorted tokens of the dashboard (shared by the page and its CSV export)."""
    only_client = _only_client(request)
    clients = list(selectors.user_clients(request.user, only_client=only_client))
    form = DashboardFilterForm(request.GET or None, clients=clients)
    filters = form.filters()
    qs = selectors.dashboard_tokens(request.user, filters, now=now, only_client=only_client)
    return clients, form, filters, qs


@login_required
@require_GET
def dashboard(request):
    if refused := _refuse_secret_in_query(request):
        return refused
    now = timezone.now()
    only_client = _only_client(request)
    clients, form, filters, qs = _dashboard_list(request, now=now)
    qs = qs.prefetch_related("privileges")
    page = Paginator(qs, settings.PORTAL_PAGE_SIZE).get_page(request.GET.get("page"))
    rows = selectors.dashboard_rows(list(page.object_list), today=validity.local_date(now))
    query = request.GET.copy()
    query.pop("page", None)
    sort_query = query.copy()
    sort_query.pop("sort", None)
    return render(
        request,
        "portal/dashboard.html",
        {
            "clients": clients,
            "form": form,
            "filters": filters,
            "page": page,
            "rows": rows,
            "sunset_token_ids": evolution_selectors.sunset_before_expiry(
                token_ids=[r.token.pk for r in rows]
            ),
            "counts": selectors.dashboard_counts(request.user, now=now, only_client=only_client),
            "card_queries": selectors.dashboard_card_queries(),
            "scoped": only_client is not None,
            "columns": _columns(filters.sort, sort_query.urlencode()),
            "page_range": page.paginator.get_elided_page_range(page.number, on_each_side=2, on_ends=1),
            "query": query.urlencode(),
            "secret_form": SecretSearchForm(),
            "secret_prefix": settings.TOKEN_SECRET_PREFIX,
            "display_prefix_length": credentials.DISPLAY_PREFIX_LENGTH,
            "sort_query": sort_query.urlencode(),
            "filtered": any(
                [
                    filters.client,
                    filters.status,
                    filters.within is not None,
                    filters.origin,
                    filters.privilege,
                    filters.q,
                ]
            ),
        },
    )


@login_required
@require_GET
def dashboard_export(request):
    """The dashboard's list as a CSV file for a spreadsheet: same filters and order, every page, no secret."""
    if refused := _refuse_secret_in_query(request):
        return refused
    now = timezone.now()
    _clients, _form, _filters, qs = _dashboard_list(request, now=now)
    tokens = list(qs.prefetch_related("privileges", "contacts"))
    rows = selectors.dashboard_rows(tokens, today=validity.local_date(now))
    return exports.csv_response(
        header=export.HEADER, rows=export.export_rows(rows), basename="jetons", dialect=exports.EXCEL_FR
    )


def _secret_lookup_quota(request) -> ratelimit.Quota:
    """Lookups of a pasted secret (token check, search by secret) share one budget per user and per IP."""
    return ratelimit.tightest(
        *ratelimit.hit_many(  # both counters in one round trip
            ("portal-verify-ip", ratelimit.client_ip(request), settings.RATELIMIT_VERIFY_PER_IP),
            ("portal-verify-user", str(request.user.pk), settings.RATELIMIT_VERIFY_PER_USER),
        ),
    )


@sensitive_post_parameters("secret")
@never_cache
@login_required
@require_POST
def token_search_secret(request):
    """A pasted whole secret, by POST: matched by digest (never written to a URL, a page or a log); opens the
    token's page if it is one of the user's, else says that none of theirs matches (whoever else holds it)."""
    form = SecretSearchForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Collez un jeton complet."))
        return redirect("portal_dashboard")
    quota = _secret_lookup_quota(request)
    if quota.exceeded:
        messages.error(
            request, _("Trop de recherches : réessayez dans %(seconds)d secondes.") % {"seconds": quota.reset}
        )
        return redirect("portal_dashboard")
    token = token_by_secret(secret=form.cleaned_data["secret"])
    if not _may_see(request, token):
        messages.warning(request, _("Aucun de vos jetons ne correspond à ce jeton."))
        return redirect("portal_dashboard")
    return redirect("portal_token", public_id=token.public_id)


# ---------------------------------------------------------------------------------------------------------------
# Token page and its actions
# ---------------------------------------------------------------------------------------------------------------
@login_required
@require_GET
def token_detail(request, public_id):
    token = _token_or_404(request, public_id)
    today = validity.today()
    ledger = selectors.reminder_rows_by_token([token.pk]).get(token.pk, [])
    declined = bool(selectors.reminders_declined_token_ids([token.pk]))
    steps = selectors.reminder_plan(token, ledger, today=today, declined=declined)
    privileges = list(token.privileges.all())
    timeline = selectors.token_timeline(token, steps)
    usable = token.is_usable()
    requests = selectors.requests_by_token([token.pk], pending_only=False).get(token.pk, [])
    for req in requests:
        req.portal_url = _optional_url("request_detail", request_id=getattr(req, "public_id", None))
    active = usable and token.renewed_by_id is None
    return render(
        request,
        "portal/token_detail.html",
        {
            "token_evolutions": evolution_selectors.token_evolutions(token=token),
            "now": timezone.now(),
            "token": token,
            "breadcrumbs": _crumbs((token.label or token.secret_prefix, None)),
            "today": today,
            "days_left": (validity.local_date(token.expires_at) - today).days,
            "days_ago": (today - validity.local_date(token.expires_at)).days,
            "privileges": privileges,
            "contacts": list(token.contacts.all()),
            "timeline": timeline,
            "reminders_sent": ledger,
            "requests": requests,
            "predecessors": selectors.token_predecessors(token),
            "declined": declined,
            "opt_out": getattr(token, "reminder_opt_out", None) if declined else None,
            "events": list(token.events.select_related("actor")[:20]),
            "usable": usable,
            "active": active,
            "request_action": token_request_action(token=token),
            "pickup_url": _optional_url("token_pickup", public_id=token.public_id) if usable else None,
            "pickup_pending": getattr(token, "pickup_pending_since", None) is not None,
        },
    )


def _token_reminders_choice(request, public_id, *, service, done: str):
    """A holder's choice about a token's reminders (decline or resume): the service, then back to the token."""
    token = _token_or_404(request, public_id)
    try:
        service(token=token, by=request.user)
    except ApplicationError as error:
        report_error(request, error)
    else:
        messages.success(request, done)
    return redirect("portal_token", public_id=token.public_id)


@login_required
@require_POST
def token_decline(request, public_id):
    return _token_reminders_choice(
        request,
        public_id,
        service=opt_outs.token_reminders_decline,
        done=_(
            "C'est noté : plus aucun rappel pour ce jeton. Vous pouvez annuler ce choix jusqu'à son expiration."
        ),
    )


@login_required
@require_POST
def token_resume(request, public_id):
    return _token_reminders_choice(
        request,
        public_id,
        service=opt_outs.token_reminders_resume,
        done=_("Les rappels de renouvellement reprennent pour ce jeton."),
    )


@login_required
@recent_auth_required
@require_http_methods(["GET", "POST"])
def token_revoke(request, public_id):
    token = _token_or_404(request, public_id)
    if token.revoked_at is not None:
        messages.info(request, _("Ce jeton est déjà révoqué."))
        return redirect("portal_token", public_id=token.public_id)
    form = RevokeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.token_revoke_by_holder(token=token, by=request.user, reason=form.cleaned_data["reason"])
        except ApplicationError as error:
            report_error(request, error, form)
        else:
            messages.success(request, _("Le jeton a été révoqué."))
            return redirect("portal_token", public_id=token.public_id)
    crumbs = _crumbs(
        (token.label or token.secret_prefix, reverse("portal_token", args=[token.public_id])),
        (_("Révoquer"), None),
    )
    return render(request, "portal/token_revoke.html", {"token": token, "form": form, "breadcrumbs": crumbs})


# ---------------------------------------------------------------------------------------------------------------
# Check a token
# ---------------------------------------------------------------------------------------------------------------
OUTCOME_TEXT = {
    TokenCheck.MISSING: gettext_lazy("Aucun jeton saisi."),
    TokenCheck.INVALID: gettext_lazy("Ce jeton n'est pas reconnu."),
    TokenCheck.EXPIRED: gettext_lazy("Ce jeton a expiré : il ne fonctionne plus."),
    TokenCheck.REVOKED: gettext_lazy("Ce jeton a été révoqué : il ne fonctionne plus."),
}


def _may_see(request, token: Token | None) -> bool:
    """Whether the portal may show this token's details to the user (one of their clients, in the chosen scope)."""
    return (
        token is not None
        and _only_client(request) in (None, token.client_id)
        and Client.objects.accessible_to(request.user).filter(pk=token.client_id).exists()
    )


@sensitive_post_parameters("secret")
@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def verify(request):
    form = VerifyForm(request.POST or None)
    context = {"form": form, "breadcrumbs": _crumbs((_("Vérifier un jeton"), None))}
    if request.method == "POST":
        quota = _secret_lookup_quota(request)
        if quota.exceeded:
            context["rate_limited"] = quota
            response = render(request, "portal/verify.html", context, status=429)
            response["Retry-After"] = str(quota.reset)
            return response
        if form.is_valid():
            secret = form.cleaned_data["secret"]
            result = token_check(secret=secret, now=timezone.now())
            token = token_by_secret(secret=secret) if result.outcome is not TokenCheck.INVALID else None
            superseded = token is not None and token.status == TokenStatus.SUPERSEDED
            successor = token.renewed_by if superseded else None
            context.update(
                {
                    "checked": True,
                    "ok": result.outcome is TokenCheck.OK,
                    "superseded": superseded and result.outcome is TokenCheck.OK,
                    "successor": successor if _may_see(request, successor) else None,
                    "successor_usable": successor is not None and successor.is_usable(),
                    "successor_status_label": TokenStatus(successor.status).label if successor else "",
                    "outcome_text": OUTCOME_TEXT.get(result.outcome, ""),
                    "privileges": list(Privilege.objects.filter(code__in=result.privileges).order_by("code")),
                    "token": token if _may_see(request, token) else None,
                    "expires_at": token.expires_at
                    if token is not None and result.outcome is TokenCheck.OK
                    else None,
                    "days_left": validity.days_left(token.expires_at) if token is not None else None,
                }
            )
            form = VerifyForm()  # never echo the secret back
            context["form"] = form
    return render(request, "portal/verify.html", context)


# ---------------------------------------------------------------------------------------------------------------
# Calendar
# ---------------------------------------------------------------------------------------------------------------
@login_required
@recent_auth_required(
    when=lambda request: request.method == "POST" and request.POST.get("action") == "generate"
)
@require_http_methods(["GET", "POST"])
def calendar_settings(request):
    new_url = None
    crumbs = _crumbs((_("Calendrier"), None))
    if _only_client(request) is not None:
        # A feed lists the tokens of every client of the user: not from a session opened for one client only.
        status = 403 if request.method == "POST" else 200
        return render(request, "portal/calendar.html", {"scoped": True, "breadcrumbs": crumbs}, status=status)
    if request.method == "POST":
        action = request.POST.get("action")
        if action == "generate":
            key = services.calendar_feed_regenerate(user=request.user)
            new_url = request.build_absolute_uri(reverse("portal_calendar_feed", kwargs={"key": key}))
            messages.success(
                request, _("Nouvelle adresse créée. L'ancienne, s'il y en avait une, ne fonctionne plus.")
            )
        elif action == "revoke":
            services.calendar_feed_revoke(user=request.user)
            messages.success(request, _("L'adresse du calendrier a été révoquée."))
            return redirect("portal_calendar")
    feed = CalendarFeed.objects.filter(user=request.user).first()
    response = render(
        request,
        "portal/calendar.html",
        {"feed": feed, "new_url": new_url, "breadcrumbs": crumbs},
    )
    response["Cache-Control"] = "no-store"
    return response


@require_GET
def calendar_feed(request, key):
    feed = services.calendar_feed_for_key(key=key)
    if feed is None:
        raise Http404
    now = timezone.now()
    horizon = validity.start_of_day(validity.local_date(now) - dt.timedelta(days=31))
    tokens = (
        Token.objects.for_user(feed.user)
        .filter(revoked_at__isnull=True, expires_at__gte=horizon)
        .select_related("client")
        .prefetch_related("privileges")
        .order_by("expires_at", "id")
    )
    CalendarFeed.objects.filter(pk=feed.pk).update(last_fetched_at=now)
    body = ics.calendar_for_tokens(tokens, now=now, host=request.get_host().split(":")[0])
    response = HttpResponse(body, content_type="text/calendar; charset=utf-8")
    response["Content-Disposition"] = 'inline; filename="jetons.ics"'
    response["Cache-Control"] = "private, max-age=600"
    response["X-Robots-Tag"] = "noindex"
    return response


# ---------------------------------------------------------------------------------------------------------------
# Who has access to my clients
# ---------------------------------------------------------------------------------------------------------------
@login_required
@require_GET
def access_list(request):
    only_client = _only_client(request)
    return render(
        request,
        "portal/access.html",
        {
            "accesses": selectors.client_accesses(request.user, only_client=only_client),
            "scoped": only_client is not None,
            "breadcrumbs": _crumbs((_("Qui a accès"), None)),
        },
    )


# ---------------------------------------------------------------------------------------------------------------
# Webhooks
# ---------------------------------------------------------------------------------------------------------------
def _endpoint_or_404(request, pk) -> WebhookEndpoint:
    endpoints = WebhookEndpoint.objects.select_related("client").filter(
        client__in=Client.objects.accessible_to(request.user)
    )
    if _only_client(request) is not None:
        endpoints = endpoints.filter(client_id=_only_client(request))
    return get_object_or_404(endpoints, pk=pk)


@login_required
@recent_auth_required(when=lambda request: request.method == "POST")
@require_http_methods(["GET", "POST"])
def webhook_list(request):
    clients = list(selectors.user_clients(request.user, only_client=_only_client(request)))
    form = WebhookForm(request.POST or None, clients=clients)
    if request.method == "POST" and form.is_valid():
        try:
            endpoint, secret = webhooks.webhook_endpoint_register(
                client=form.cleaned_data["client"],
                url=form.cleaned_data["url"],
                description=form.cleaned_data["description"],
                by=request.user,
            )
        except ValidationError as exc:
            form.add_error("url", exc)
        else:
            return _show_secret(request, endpoint, secret)
    endpoints = (
        WebhookEndpoint.objects.filter(client__in=clients)
        .select_related("client")
        .order_by("client__name", "id")
    )
    return render(
        request,
        "portal/webhooks.html",
        {
            "form": form,
            "endpoints": endpoints,
            "clients": clients,
            "breadcrumbs": _crumbs((_("Webhooks"), None)),
        },
    )


def _show_secret(request, endpoint, secret):
    response = render(
        request,
        "portal/webhook_secret.html",
        {
            "endpoint": endpoint,
            "secret": secret,
            "breadcrumbs": _crumbs((_("Webhooks"), reverse("portal_webhooks")), (endpoint.url, None)),
        },
    )
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_GET
def webhook_detail(request, pk):
    endpoint = _endpoint_or_404(request, pk)
    deliveries = (
        WebhookDelivery.objects.filter(endpoint=endpoint)
        .select_related("event")
        .prefetch_related("attempt_log")
        .order_by("-created_at", "-id")[:50]
    )
    crumbs = _crumbs((_("Webhooks"), reverse("portal_webhooks")), (endpoint.url, None))
    return render(
        request,
        "portal/webhook_detail.html",
        {"endpoint": endpoint, "deliveries": deliveries, "breadcrumbs": crumbs},
    )


@login_required
@recent_auth_required(
    when=lambda request: request.POST.get("action") in ("disable", "delete", "rotate"),
    return_to="portal_webhook",
)
@require_POST
def webhook_action(request, pk):
    endpoint = _endpoint_or_404(request, pk)
    action = request.POST.get("action")
    if action == "disable":
        webhooks.webhook_endpoint_disable(endpoint=endpoint, by=request.user)
        messages.success(request, _("Le webhook est désactivé : il ne recevra plus d'événement."))
        return redirect("portal_webhooks")
    if action == "delete":
        if not request.POST.get("confirm"):
            messages.error(request, _("Cochez la case pour confirmer la suppression du webhook."))
            return redirect("portal_webhook", pk=endpoint.pk)
        webhooks.webhook_endpoint_delete(endpoint=endpoint, by=request.user)
        messages.success(request, _("Le webhook est supprimé, ainsi que son secret."))
        return redirect("portal_webhooks")
    if not endpoint.is_active:
        raise Http404
    if action == "rotate":
        secret = webhooks.webhook_endpoint_rotate_secret(endpoint=endpoint, by=request.user)
        return _show_secret(request, endpoint, secret)
    if action == "ping":
        quota = ratelimit.tightest(
            *ratelimit.hit_many(
                ("webhook-ping-endpoint", str(endpoint.pk), settings.RATELIMIT_WEBHOOK_PING_PER_ENDPOINT),
                ("webhook-ping-user", str(request.user.pk), settings.RATELIMIT_WEBHOOK_PING_PER_USER),
            )
        )
        if quota.exceeded:
            messages.error(
                request,
                _("Trop d'événements de test : réessayez dans %(seconds)d secondes.")
                % {"seconds": quota.reset},
            )
            return redirect("portal_webhook", pk=endpoint.pk)
        webhooks.webhook_emit(
            client=endpoint.client, event_type="ping", payload={"message": "ping"}, endpoint=endpoint
        )
        messages.success(request, _("Événement de test envoyé : voyez les livraisons ci-dessous."))
        return redirect("portal_webhook", pk=endpoint.pk)
    messages.error(request, _("Action inconnue."))
    return redirect("portal_webhook", pk=endpoint.pk)
