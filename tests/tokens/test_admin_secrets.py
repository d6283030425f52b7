"""Token secrets in the admin: issued by POST → redirect → GET, shown once; looked up by POST, never in a URL or a log."""

import logging

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.views.debug import SafeExceptionReporterFilter

from tests.factories import ClientFactory, issue_token
from tokens.models import Privilege, Token, TokenEvent

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:tokens_token_changelist")
ISSUE = reverse("admin:tokens_token_issue")
SECRET_SEARCH = reverse("admin:tokens_token_secret_search")


def _issue_data(client):
    return {
        "client": client.pk,
        "label": "Portail RH",
        "privileges": [Privilege.objects.get(code="entreprises").pk],
        "issued_at_0": "2026-03-10",
        "issued_at_1": "09:30:00",
        "origin": "",
    }


def _staff(django_user_model, *codenames):
    user = django_user_model.objects.create_user("agent", "agent@example.org", "x", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="tokens", codename__in=codenames)
    )
    return user


def test_reloading_the_issued_page_creates_nothing_and_shows_no_secret(admin_client, caplog):
    caplog.set_level(logging.DEBUG)
    client = ClientFactory()
    posted = admin_client.post(ISSUE, _issue_data(client))
    assert posted.status_code == 302
    token = Token.objects.get()
    issued_url = reverse("admin:tokens_token_issued", args=[token.public_id])
    assert posted.url == issued_url

    first = admin_client.get(issued_url)
    secret = first.context["secret"]
    assert secret.startswith("tkm_") and secret in first.content.decode()
    assert "no-store" in first["Cache-Control"]
    assert all(secret not in str(v) for v in admin_client.session.values())  # popped on first display

    reload = admin_client.get(issued_url)
    assert reload.status_code == 200
    assert reload.context["secret"] is None
    assert 'id="token-secret-gone"' in reload.content.decode()
    assert secret not in reload.content.decode()
    assert Token.objects.count() == 1
    assert TokenEvent.objects.filter(kind=TokenEvent.Kind.ISSUED).count() == 1
    assert LogEntry.objects.get().object_id == str(token.pk)  # the admin's own history records the addition

    # The secret is in no URL, no admin history and no log record.
    assert secret not in posted.url
    assert secret not in caplog.text
    assert not any(secret in str(r.args) for r in caplog.records)
    assert secret not in LogEntry.objects.get().change_message + LogEntry.objects.get().object_repr
    assert admin_client.get("/v2/privileges", {"token": secret}).json() == {"privileges": ["entreprises"]}


def test_the_same_issue_form_sent_twice_issues_one_token(admin_client):
    form = admin_client.get(ISSUE).context["adminform"].form
    nonce = form["issue_nonce"].value()
    assert len(nonce) >= 16
    data = {**_issue_data(ClientFactory()), "issue_nonce": nonce}
    first = admin_client.post(ISSUE, data)
    token = Token.objects.get()
    issued_url = reverse("admin:tokens_token_issued", args=[token.public_id])
    assert first.url == issued_url
    second = admin_client.post(ISSUE, data, follow=True)  # double click, or the POST sent again
    assert second.redirect_chain == [(issued_url, 302)]
    assert Token.objects.count() == 1
    assert any("déjà été envoyé" in str(m) for m in second.context["messages"])
    # The first answer was never displayed: the duplicate leads to it, and it shows the secret once.
    assert second.context["secret"].startswith("tkm_")
    assert admin_client.get(issued_url).context["secret"] is None
    # A fresh form issues again.
    fresh_nonce = admin_client.get(ISSUE).context["adminform"].form["issue_nonce"].value()
    assert fresh_nonce != nonce
    assert admin_client.post(ISSUE, {**data, "issue_nonce": fresh_nonce}).status_code == 302
    assert Token.objects.count() == 2


def test_the_add_button_leads_to_the_issue_page(admin_client):
    assert admin_client.get(reverse("admin:tokens_token_add")).url == ISSUE
    page = admin_client.get(CHANGELIST).content.decode()
    assert f'href="{ISSUE}"' in page
    form = admin_client.get(ISSUE)
    assert form.status_code == 200
    assert 'name="_addanother"' not in form.content.decode()
    assert 'type="hidden" name="issue_nonce"' in form.content.decode()


def test_issuing_needs_the_add_permission(client, django_user_model):
    client.force_login(_staff(django_user_model, "view_token"))
    issued = issue_token()
    assert client.get(ISSUE).status_code == 403
    assert client.post(ISSUE, _issue_data(ClientFactory())).status_code == 403
    assert client.get(reverse("admin:tokens_token_issued", args=[issued.token.public_id])).status_code == 403
    assert Token.objects.count() == 1


def test_secret_search_by_post_goes_to_the_token(admin_client, caplog):
    caplog.set_level(logging.DEBUG)
    issued = issue_token(label="cherché")
    issue_token(label="autre")
    page = admin_client.get(CHANGELIST).content.decode()
    assert f'action="{SECRET_SEARCH}"' in page and 'id="secret-search"' in page

    response = admin_client.post(SECRET_SEARCH, {"secret": f"  {issued.secret} "})
    assert response.status_code == 302
    # Were the view to fail, Django's error report (log, email) would not show the pasted secret.
    assert response.wsgi_request.sensitive_post_parameters == ("secret",)
    report = SafeExceptionReporterFilter().get_post_parameters(response.wsgi_request)
    assert issued.secret not in str(dict(report))
    assert response.url == reverse("admin:tokens_token_change", args=[issued.token.pk])
    assert secret_free(response, issued.secret)
    change = admin_client.get(response.url)
    assert secret_free(change, issued.secret)
    assert issued.secret not in caplog.text


def secret_free(response, secret) -> bool:
    return secret not in response.get("Location", "") and secret not in response.content.decode()


def test_secret_search_without_match(admin_client):
    issued = issue_token()
    response = admin_client.post(SECRET_SEARCH, {"secret": issued.secret + "x"}, follow=True)
    assert response.redirect_chain == [(CHANGELIST, 302)]
    assert [str(m) for m in response.context["messages"]] == ["Aucun jeton ne correspond à ce secret."]
    assert issued.secret not in response.content.decode()
    empty = admin_client.post(SECRET_SEARCH, {"secret": ""}, follow=True)
    assert [str(m) for m in empty.context["messages"]] == ["Collez un jeton complet."]


def test_secret_search_is_post_only_and_needs_the_view_permission(client, admin_client, django_user_model):
    issued = issue_token()
    assert admin_client.get(SECRET_SEARCH, {"secret": issued.secret}).status_code == 405
    client.force_login(django_user_model.objects.create_user("s", "s@example.org", "x", is_staff=True))
    assert client.post(SECRET_SEARCH, {"secret": issued.secret}).status_code == 403


def test_search_box_refuses_a_whole_secret_without_echoing_it(admin_client, caplog):
    caplog.set_level(logging.DEBUG)
    issued = issue_token(label="cherché")
    response = admin_client.get(CHANGELIST, {"q": issued.secret, "statut": "active"})
    assert response.status_code == 302
    assert response.url == CHANGELIST + "?statut=active"  # the other filters kept, the secret dropped
    page = admin_client.get(response.url)
    content = page.content.decode()
    assert issued.secret not in content
    assert any("formulaire « Rechercher par jeton complet »" in str(m) for m in page.context["messages"])
    assert issued.secret not in caplog.text
    # The display prefix still searches as before; a longer term starting with the prefix does not look anything up.
    assert [
        t.label
        for t in admin_client.get(CHANGELIST, {"q": issued.token.secret_prefix}).context["cl"].result_list
    ] == ["cherché"]
    assert admin_client.get(CHANGELIST, {"q": issued.secret}).url == CHANGELIST
