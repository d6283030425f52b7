"""« Ce secret a fuité » : the holder reports their own token's secret exposed, from its page. The same policy and
messages as a scanner's report (tokens.exposure); a recent password is needed, as for revoking."""

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods

from tokenmgr.reauth import recent_auth_required
from tokens.exposure import POLICY_REVOKE, PORTAL_SOURCE, policy, token_exposure_record
from tokens.models import Token
from tokens.models_exposure import URL_MAX_LENGTH

from . import selectors


class ExposureReportForm(forms.Form):
    url = forms.URLField(
        label=gettext_lazy("Où le secret a-t-il été vu ?"),
        required=False,
        max_length=URL_MAX_LENGTH,
        assume_scheme="https",
        help_text=gettext_lazy("Adresse du dépôt, du ticket ou de la page où le secret est apparu."),
    )
    confirm = forms.BooleanField(label=gettext_lazy("Je confirme que le secret de ce jeton a fuité."))


@login_required
@recent_auth_required
@require_http_methods(["GET", "POST"])
def token_exposed(request, public_id):
    try:
        token = selectors.token_for_user(request.user, public_id)
    except Token.DoesNotExist:
        raise Http404 from None
    if not token.is_usable():
        messages.info(request, _("Ce jeton ne fonctionne déjà plus."))
        return redirect("portal_token", public_id=token.public_id)
    form = ExposureReportForm(request.POST or None)
    revokes = policy() == POLICY_REVOKE
    if request.method == "POST" and form.is_valid():
        token_exposure_record(
            token=token, url=form.cleaned_data["url"], source=PORTAL_SOURCE, by=request.user
        )
        if revokes:
            messages.success(
                request,
                _(
                    "Le jeton a été révoqué et ses contacts prévenus. Demandez un nouveau jeton pour le remplacer."
                ),
            )
        else:
            messages.success(
                request,
                _("Le jeton est signalé exposé et ses contacts prévenus : remplacez-le au plus vite."),
            )
        return redirect("portal_token", public_id=token.public_id)
    crumbs = [
        (_("Tableau de bord"), reverse("portal_dashboard")),
        (token.label or token.secret_prefix, reverse("portal_token", args=[token.public_id])),
        (_("Ce secret a fuité"), None),
    ]
    return render(
        request,
        "portal/token_exposed.html",
        {"token": token, "form": form, "revokes": revokes, "breadcrumbs": crumbs},
    )
