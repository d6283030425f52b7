"""Integrator pages of access requests and token pick-up (minimal; the general UI lives in `portal`).

Every object is looked up among the clients the user belongs to, by its public UUID: anything else is a 404.
"""

import dataclasses
from urllib.parse import urlencode

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

from . import selectors, services
from .forms import AccessRequestForm, AccountForm, MessageForm, RegenerateForm, SignupForm
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


def _save_new_request(request, *, form, client, kind, token=None, prefilled_from=None, existing_document=""):
    """Create the draft, then submit it if asked: one service per step."""
    data = form.to_data()
    if data.legal_basis_document is None and existing_document:
        data = dataclasses.replace(data, legal_basis_document=existing_document)
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
        return None
    return _after_save(request, access_request)


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


def _render_form(request, form, **context):
    context.setdefault("token", None)
    return render(request, "tokens/request_form.html", {"form": form, **context})


def _open_request_redirect(request, token):
    open_request = AccessRequest.objects.open().filter(token=token).first()
    if open_request is not None:
        messages.info(request, _("Une demande est déjà en cours pour ce jeton."))
        return redirect("request_detail", request_id=open_request.public_id)
    return None


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
    if request.method == "POST":
        if len(clients) > 1:
            client = get_object_or_404(accessible, siret=request.POST.get("client", ""))
        form = AccessRequestForm(request.POST, request.FILES, submitting=_submitting(request))
        if form.is_valid():
            response = _save_new_request(request, form=form, client=client, kind=AccessRequest.Kind.NEW)
            if response is not None:
                return response
    else:
        form = AccessRequestForm(initial={"requester_email": request.user.email})
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
        form = AccessRequestForm(request.POST, request.FILES, submitting=_submitting(request), **kwargs)
        if form.is_valid():
            try:
                services.access_request_update(
                    access_request=access_request, by=request.user, data=form.to_data()
                )
            except ApplicationError as error:
                report_error(request, error)
                return redirect("request_detail", request_id=request_id)
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
    blocked = _open_request_redirect(request, token)
    if blocked is not None:
        return blocked
    if token.revoked_at is not None or token.renewed_by_id is not None:
        messages.error(request, _("Ce jeton est révoqué ou déjà remplacé : il ne peut plus être renouvelé."))
        return redirect("token_pickup", public_id=token.public_id)
    prefill = selectors.access_request_prefill(token=token, kind=kind)
    existing = prefill.initial.pop("legal_basis_document", "")
    base = list(token.privileges.all()) if kind == AccessRequest.Kind.EXTENSION else []
    kwargs = {"kind": kind, "base_privileges": base, "existing_document": existing}
    if request.method == "POST":
        form = AccessRequestForm(request.POST, request.FILES, submitting=_submitting(request), **kwargs)
        if form.is_valid():
            response = _save_new_request(
                request,
                form=form,
                client=token.client,
                kind=kind,
                token=token,
                prefilled_from=prefill.prefilled_from,
                existing_document=existing,
            )
            if response is not None:
                return response
    else:
        initial = dict(prefill.initial)
        if kind == AccessRequest.Kind.EXTENSION:
            initial["privileges"] = []
        form = AccessRequestForm(initial=initial, **kwargs)
    return _render_form(
        request,
        form,
        title=title,
        token=token,
        renewal=kind == AccessRequest.Kind.RENEWAL,
        base_privileges=base,
        existing_document=existing,
        prefilled_from=prefill.prefilled_from,
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
    blocked = _open_request_redirect(request, token)
    if blocked is not None:
        return blocked
    if token.revoked_at is not None or token.renewed_by_id is not None:
        messages.error(request, _("Ce jeton est révoqué ou déjà remplacé."))
        return redirect("token_pickup", public_id=public_id)
    if request.method == "POST":
        form = AccessRequestForm(request.POST, request.FILES, submitting=_submitting(request))
        if form.is_valid():
            response = _save_new_request(
                request, form=form, client=token.client, kind=AccessRequest.Kind.NEW, token=token
            )
            if response is not None:
                return response
    else:
        name = request.user.get_full_name()
        form = AccessRequestForm(initial={"requester_email": request.user.email, "requester_name": name})
    return _render_form(request, form, title=_("Nouvelle demande d'accès"), token=token, legacy=True)


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
            "can_request": token.is_usable() and token.renewed_by_id is None,
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


def signup(request):
    next_url = _next_or_requests(request, request.POST.get("next") or request.GET.get("next", ""))
    if request.method == "POST":
        form = SignupForm(request.POST)
        if form.is_valid():
            # Per client IP only here; per address, lookup and sending in a task (no account enumeration).
            from portal.services import ACCOUNT_EMAIL_REQUESTS_PER_IP, SIGNUP_EMAIL, account_email_request
            from tokenmgr import ratelimit

            quota = ratelimit.hit("signup-ip", ratelimit.client_ip(request), ACCOUNT_EMAIL_REQUESTS_PER_IP)
            if quota.exceeded:
                response = render(request, "registration/too_many.html", {"rate_limited": quota}, status=429)
                response["Retry-After"] = str(quota.reset)
                return response
            account_email_request(kind=SIGNUP_EMAIL, email=form.cleaned_data["email"], next_url=next_url)
            return render(request, "tokens/signup_sent.html", {"email": form.cleaned_data["email"]})
    else:
        form = SignupForm()
    return render(request, "tokens/signup.html", {"form": form, "next": next_url})


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
