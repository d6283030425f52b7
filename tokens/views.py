"""Integrator pages of access requests and token pick-up (minimal; the general UI lives in `portal`).

Every object is looked up among the clients the user belongs to, by its public UUID: anything else is a 404.
"""

import dataclasses
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from tokenmgr.errors import ApplicationError
from tokenmgr.pages import report_error, safe_next
from tokenmgr.reauth import recent_auth_required

from . import prefill, request_actions, selectors, services, uploads
from .forms import AccessRequestForm, AccountForm, MessageForm, RegenerateForm
from .models import AccessRequest, Client, Origin, Token, TokenStatus


def _member_token(request, public_id) -> Token:
    return get_object_or_404(
        Token.objects.for_user(request.user).select_related("client", "renewed_by"), public_id=public_id
    )


def _member_request(request, request_id) -> AccessRequest:
    # The URL argument is not called `public_id`: that name means "a token" to the magic-link middleware.
    queryset = AccessRequest.objects.for_user(request.user)
    scoped = getattr(request, "magic_link_client_id", None)
    if scoped is not None:
        queryset = queryset.filter(client_id=scoped)
    return get_object_or_404(
        queryset.select_related("client", "token", "issued_token", "applicant"), public_id=request_id
    )


def _submitting(request) -> bool:
    return request.POST.get("action") == "submit"


def _bind_form(request, *, existing_document: str = "", **kwargs) -> AccessRequestForm:
    """The posted form. A document kept from an earlier attempt of this session (uploads) counts as attached."""
    posted_id = request.POST.get(uploads.FIELD, "")
    kept = uploads.pending_upload_for(request=request, upload_id=posted_id)
    form = AccessRequestForm(
        request.POST,
        request.FILES,
        submitting=_submitting(request),
        existing_document=kept.name if kept is not None else existing_document,
        **kwargs,
    )
    form.kept_upload = kept
    if posted_id and kept is None and not request.FILES.get("legal_basis_document"):
        form.is_valid()
        form.add_error(
            "legal_basis_document",
            _("Le document joint précédemment n'est plus disponible : joignez-le à nouveau."),
        )
    return form


def _form_data(form, *, existing_document: str = ""):
    """The form's data; without a new upload, the kept document, else the stored one (pre-fill)."""
    data = form.to_data()
    kept = getattr(form, "kept_upload", None)
    if data.legal_basis_document is None and kept is not None:
        data = dataclasses.replace(data, legal_basis_document=uploads.pending_upload_file(kept))
    elif data.legal_basis_document is None and existing_document:
        data = dataclasses.replace(data, legal_basis_document=existing_document)
    return data


def _kept_upload_used(request, form) -> None:
    kept = getattr(form, "kept_upload", None)
    if kept is not None:  # now copied into the request, or replaced by a new upload
        uploads.pending_upload_used(request=request, pending=kept)


def _new_request_form(
    request, *, client, kind, initial, token=None, prefilled_from=None, existing_document="", **form_kwargs
):
    """The form of a new request and, when posted valid, the page to go to once saved: the draft is created, then
    submitted if asked (one service per step). Not posted: a blank form with `initial`. Returns (form, response)."""
    if request.method != "POST":
        return AccessRequestForm(initial=initial, existing_document=existing_document, **form_kwargs), None
    form = _bind_form(request, existing_document=existing_document, **form_kwargs)
    if not form.is_valid():
        return form, None
    data = _form_data(form, existing_document=existing_document)
    try:
        access_request = services.access_request_create(
            client=client,
            kind=kind,
            applicant=request.user,
            data=data,
            token=token,
            prefilled_from=prefilled_from,
        )
    except ApplicationError as error:
        report_error(request, error)
        return form, None
    _kept_upload_used(request, form)
    return form, _after_save(request, access_request)


def _after_save(request, access_request):
    if _submitting(request):
        try:
            services.access_request_submit(access_request=access_request, by=request.user)
        except ApplicationError as error:
            report_error(request, error)
            return redirect("request_edit", request_id=access_request.public_id)
        messages.success(request, _("Votre demande a été transmise à l'instruction."))
    else:
        messages.success(request, _("Brouillon enregistré."))
    return redirect("request_detail", request_id=access_request.public_id)


def _keep_upload(request, form):
    """On a re-display, the document just received (valid) is kept, so that it need not be attached again."""
    kept = getattr(form, "kept_upload", None)
    fresh = request.FILES.get("legal_basis_document")
    if fresh is not None and "legal_basis_document" not in form.errors:
        if kept is not None:
            uploads.pending_upload_used(request=request, pending=kept)
        kept = uploads.pending_upload_keep(request=request, upload=fresh)
    return kept


def _breadcrumbs(title, token=None, access_request=None):
    crumbs = [(_("Tableau de bord"), reverse("portal_dashboard"))]
    if token is not None:
        crumbs.append((token.label or token.secret_prefix, reverse("portal_token", args=[token.public_id])))
    else:
        crumbs.append((_("Mes demandes"), reverse("request_list")))
        if access_request is not None:
            crumbs.append(
                (
                    access_request.get_kind_display().capitalize(),
                    reverse("request_detail", args=[access_request.public_id]),
                )
            )
    return [*crumbs, (title, None)]


def _render_form(request, form, **context):
    context.setdefault("token", None)
    kept = None
    if form is not None:
        kept = _keep_upload(request, form) if form.is_bound else None
    context.setdefault(
        "breadcrumbs",
        _breadcrumbs(context.get("title", ""), context["token"], context.get("access_request")),
    )
    max_bytes = settings.ACCESS_REQUEST_DOCUMENT_MAX_BYTES
    context["existing_document_name"] = (context.get("existing_document") or "").rsplit("/", 1)[-1]
    return render(
        request,
        "tokens/request_form.html",
        {
            "form": form,
            "kept_upload": kept,
            "pending_upload_field": uploads.FIELD,
            "upload_max_mb": max(1, max_bytes // (1024 * 1024)),
            **context,
        },
    )


def _pending_request_page(request, token):
    """A request that would replace this token is open: show it (never a second one beside it)."""
    action = request_actions.token_request_action(token=token)
    if action.action != request_actions.RequestAction.PENDING:
        return None
    title = _("Une demande est déjà en cours pour ce jeton")
    return render(
        request,
        "tokens/request_pending.html",
        {
            "token": token,
            "pending": action.pending,
            "pending_date": action.pending_date,
            "title": title,
            "breadcrumbs": _breadcrumbs(title, token),
        },
    )


# ------------------------------------------------------------------------------
# Requests
# ------------------------------------------------------------------------------


@login_required
def request_list(request):
    requests = AccessRequest.objects.for_user(request.user)
    if getattr(request, "magic_link_client_id", None) is not None:
        requests = requests.filter(client_id=request.magic_link_client_id)
    requests = requests.select_related("client", "token", "issued_token")
    return render(request, "tokens/request_list.html", {"access_requests": requests})


@login_required
def request_new(request):
    accessible = Client.objects.accessible_to(request.user)
    clients = list(accessible)
    if not clients:
        messages.error(request, _("Votre compte n'est rattaché à aucune organisation."))
        return render(request, "tokens/request_form.html", {"form": None, "clients": []})
    client = clients[0]
    if request.method == "POST" and len(clients) > 1:
        client = get_object_or_404(accessible, siret=request.POST.get("client", ""))
    form, saved = _new_request_form(
        request, client=client, kind=AccessRequest.Kind.NEW, initial={"requester_email": request.user.email}
    )
    if saved is not None:
        return saved
    return _render_form(request, form, title=_("Nouvelle demande d'accès"), clients=clients, client=client)


@login_required
def request_detail(request, request_id):
    access_request = _member_request(request, request_id)
    return render(
        request,
        "tokens/request_detail.html",
        {
            "access_request": access_request,
            "events": access_request.events.select_related("actor"),
            "thread": access_request.messages.select_related("author"),
            "message_form": MessageForm(),
            "privileges": access_request.privileges.all(),
        },
    )


@login_required
def request_edit(request, request_id):
    access_request = _member_request(request, request_id)
    if not access_request.is_editable:
        messages.error(request, _("Cette demande n'est plus modifiable."))
        return redirect("request_detail", request_id=request_id)
    base = []
    if access_request.kind == AccessRequest.Kind.EXTENSION and access_request.token:
        base = list(access_request.token.privileges.all())
    existing = access_request.legal_basis_document.name or ""
    kwargs = {"kind": access_request.kind, "base_privileges": base, "existing_document": existing}
    if request.method == "POST":
        form = _bind_form(request, **kwargs)
        if form.is_valid():
            try:
                services.access_request_update(
                    access_request=access_request, by=request.user, data=_form_data(form)
                )
            except ApplicationError as error:
                report_error(request, error)
                return redirect("request_detail", request_id=request_id)
            _kept_upload_used(request, form)
            return _after_save(request, access_request)
    else:
        initial = selectors.access_request_snapshot(access_request=access_request)
        base_codes = {p.code for p in base}
        initial["privileges"] = [c for c in initial["privileges"] if c not in base_codes]
        form = AccessRequestForm(initial=initial, **kwargs)
    return _render_form(
        request,
        form,
        title=_("Modifier la demande"),
        access_request=access_request,
        token=access_request.token,
        base_privileges=base,
        existing_document=existing,
        legacy=access_request.token is not None
        and access_request.token.origin == Origin.DEMARCHES_SIMPLIFIEES,
    )


@login_required
@require_POST
def request_abandon(request, request_id):
    access_request = _member_request(request, request_id)
    try:
        services.access_request_abandon(access_request=access_request, by=request.user)
        messages.success(request, _("La demande a été abandonnée."))
    except ApplicationError as error:
        report_error(request, error)
    return redirect("request_detail", request_id=request_id)


@login_required
@require_POST
def request_message(request, request_id):
    access_request = _member_request(request, request_id)
    form = MessageForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Le message est vide."))
    else:
        try:
            services.access_request_message_post(
                access_request=access_request,
                by=request.user,
                body=form.cleaned_data["body"],
                from_instructor=False,
            )
            messages.success(request, _("Message envoyé à l'instructeur."))
        except ApplicationError as error:
            report_error(request, error)
    return redirect("request_detail", request_id=request_id)


@login_required
def request_document(request, request_id):
    access_request = _member_request(request, request_id)
    if not access_request.legal_basis_document:
        raise Http404
    return FileResponse(access_request.legal_basis_document.open("rb"), content_type="application/pdf")


# ------------------------------------------------------------------------------
# Renewal, extension, legacy migration
# ------------------------------------------------------------------------------


def _token_request_view(request, token, kind, title):
    pending = _pending_request_page(request, token)
    if pending is not None:
        return pending
    if not selectors.token_replaceable(token=token):
        messages.error(request, _("Ce jeton est révoqué ou déjà remplacé : il ne peut plus être renouvelé."))
        return redirect("token_pickup", public_id=token.public_id)
    values = prefill.token_prefill(token=token, kind=kind)
    initial = dict(values.initial)
    existing = initial.pop("legal_basis_document", "")
    base = list(token.privileges.all()) if kind == AccessRequest.Kind.EXTENSION else []
    if kind == AccessRequest.Kind.EXTENSION:
        initial["privileges"] = []
    form, saved = _new_request_form(
        request,
        client=token.client,
        kind=kind,
        initial=initial,
        token=token,
        prefilled_from=values.prefilled_from,
        existing_document=existing,
        base_privileges=base,
    )
    if saved is not None:
        return saved
    return _render_form(
        request,
        form,
        title=title,
        token=token,
        renewal=kind == AccessRequest.Kind.RENEWAL,
        base_privileges=base,
        existing_document=existing,
        prefilled_from=values.prefilled_from,
        prefill_source=values.source,
        prefilled_groups=prefill.field_groups(values.source.fields),
        missing_groups=prefill.field_groups(values.source.missing),
    )


@login_required
def token_renew(request, public_id):
    """api_gouv route of the reminder email: the renewal form, pre-filled from the token's last request."""
    token = _member_token(request, public_id)
    if token.origin == Origin.DEMARCHES_SIMPLIFIEES:
        return redirect("token_legacy_renew", public_id=public_id)
    return _token_request_view(request, token, AccessRequest.Kind.RENEWAL, _("Renouveler le jeton"))


@login_required
def token_extend(request, public_id):
    token = _member_token(request, public_id)
    return _token_request_view(
        request, token, AccessRequest.Kind.EXTENSION, _("Élargir le périmètre du jeton")
    )


def _completing_account(request) -> bool:
    return request.user.is_authenticated and not request.user.has_usable_password()


@recent_auth_required(when=_completing_account)  # setting a first password
def token_legacy_renew(request, public_id):
    """demarches_simplifiees route: explains the change of platform, account creation, then a NEW request.

    Nothing is pre-filled from the old platform; once validated, the new token supersedes the legacy one.
    """
    if not request.user.is_authenticated:
        get_object_or_404(Token, public_id=public_id, origin=Origin.DEMARCHES_SIMPLIFIEES)
        return render(request, "tokens/legacy_landing.html", {"next": request.get_full_path()})
    token = _member_token(request, public_id)
    if token.origin != Origin.DEMARCHES_SIMPLIFIEES:
        return redirect("token_renew", public_id=public_id)
    if not request.user.has_usable_password():
        # Signed in by the reminder's magic link (which proved the email): finish the account first.
        if request.method == "POST" and request.POST.get("step") == "account":
            account_form = AccountForm(request.POST, user=request.user)
            if account_form.is_valid():
                c = account_form.cleaned_data
                services.user_account_complete(
                    user=request.user,
                    password=c["password1"],
                    first_name=c["first_name"],
                    last_name=c["last_name"],
                )
                login(request, request.user, backend="django.contrib.auth.backends.ModelBackend")
                messages.success(request, _("Votre compte est créé."))
                return redirect("token_legacy_renew", public_id=public_id)
        else:
            account_form = AccountForm(
                user=request.user,
                initial={"first_name": request.user.first_name, "last_name": request.user.last_name},
            )
        return render(
            request, "tokens/account_form.html", {"form": account_form, "token": token, "legacy": True}
        )
    pending = _pending_request_page(request, token)
    if pending is not None:
        return pending
    if not selectors.token_replaceable(token=token):
        messages.error(request, _("Ce jeton est révoqué ou déjà remplacé."))
        return redirect("token_pickup", public_id=public_id)
    initial = {"requester_email": request.user.email, "requester_name": request.user.get_full_name()}
    form, saved = _new_request_form(
        request, client=token.client, kind=AccessRequest.Kind.NEW, initial=initial, token=token
    )
    if saved is not None:
        return saved
    return _render_form(request, form, title=_("Nouvelle demande d'accès"), token=token, legacy=True)


@login_required
def token_request_new(request, public_id):
    """A new request in place of a token that no longer works (expired or revoked): for its client, with its
    privileges (not for a demarches-simplifiees token: nothing is taken from the old platform).

    A token still in service is renewed instead; a request already open about it is shown instead.
    """
    token = _member_token(request, public_id)
    pending = _pending_request_page(request, token)
    if pending is not None:
        return pending
    if token.renewed_by_id is not None:
        messages.info(request, _("Ce jeton a déjà été remplacé par un nouveau jeton."))
        return redirect("portal_token", public_id=public_id)
    if token.is_usable():
        return redirect("token_renew", public_id=public_id)
    # An expired token is linked to the request (the new token will replace it); a revoked one cannot be.
    linked = token if token.revoked_at is None else None
    initial = {"requester_email": request.user.email, "requester_name": request.user.get_full_name()}
    if request.method != "POST" and token.origin != Origin.DEMARCHES_SIMPLIFIEES:
        initial["privileges"] = sorted(p.code for p in token.privileges.all())
    form, saved = _new_request_form(
        request, client=token.client, kind=AccessRequest.Kind.NEW, initial=initial, token=linked
    )
    if saved is not None:
        return saved
    return _render_form(
        request,
        form,
        title=_("Nouvelle demande d'accès"),
        token=token,
        client=token.client,
        replacing=token,
        replacing_privileges=token.origin != Origin.DEMARCHES_SIMPLIFIEES,
    )


# ------------------------------------------------------------------------------
# Token page and pick-up
# ------------------------------------------------------------------------------


@login_required
def token_pickup(request, public_id):
    token = _member_token(request, public_id)
    return render(
        request,
        "tokens/token_pickup.html",
        {
            "token": token,
            "status_label": TokenStatus(token.status).label,
            "privileges": token.privileges.all(),
            "access_requests": AccessRequest.objects.filter(token=token).order_by("-created_at"),
            "issuing_request": AccessRequest.objects.filter(issued_token=token).first(),
            "regenerate_form": RegenerateForm(),
            "request_action": request_actions.token_request_action(token=token),
        },
    )


def _secret_page(request, token, secret, *, regenerated):
    response = render(
        request, "tokens/token_secret.html", {"token": token, "secret": secret, "regenerated": regenerated}
    )
    response["Cache-Control"] = "no-store"
    return response


@never_cache
@login_required
@recent_auth_required(return_to="token_pickup")
@require_POST
def token_reveal(request, public_id):
    token = _member_token(request, public_id)
    try:
        secret = services.token_secret_reveal(token=token, by=request.user)
    except ApplicationError as error:
        report_error(request, error)
        return redirect("token_pickup", public_id=public_id)
    token.refresh_from_db()
    return _secret_page(request, token, secret, regenerated=False)


@never_cache
@login_required
@recent_auth_required(return_to="token_pickup")
@require_POST
def token_regenerate(request, public_id):
    token = _member_token(request, public_id)
    form = RegenerateForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Cochez la case pour confirmer la régénération."))
        return redirect("token_pickup", public_id=public_id)
    try:
        secret = services.token_secret_regenerate(
            token=token, by=request.user, reason=form.cleaned_data["reason"]
        )
    except ApplicationError as error:
        report_error(request, error)
        return redirect("token_pickup", public_id=public_id)
    token.refresh_from_db()
    return _secret_page(request, token, secret, regenerated=True)


# ------------------------------------------------------------------------------
# Sign-up with email verification (people arriving without a magic link)
# ------------------------------------------------------------------------------


def _next_or_requests(request, candidate: str) -> str:
    return safe_next(request, candidate) or reverse("request_list")


def signup_confirm(request, signed):
    payload = selectors.signup_link_read(signed=signed)
    if payload is None:
        return render(request, "tokens/signup_invalid.html", status=400)
    next_url = _next_or_requests(request, payload.get("next", ""))
    if request.method == "POST":
        form = AccountForm(request.POST)
        if form.is_valid():
            c = form.cleaned_data
            try:
                user = services.user_signup(
                    email=payload["email"],
                    password=c["password1"],
                    first_name=c["first_name"],
                    last_name=c["last_name"],
                )
            except ApplicationError as error:
                report_error(request, error)
                return redirect(f"{reverse('login')}?{urlencode({'next': next_url})}")
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            messages.success(request, _("Votre compte est créé."))
            return redirect(next_url)
    else:
        form = AccountForm()
    return render(request, "tokens/account_form.html", {"form": form, "email": payload["email"]})
