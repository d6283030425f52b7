"""Sign-in in headless Chromium: password, emailed login link end to end, password reset; screenshots under
var/screenshots/login_*.png."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.core import mail

from tests.browser.conftest import save_screenshot
from tests.factories import ClientFactory, UserFactory, issue_token

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery staple"


def shot(page, name):
    save_screenshot(page, f"login_{name}")


@pytest.fixture
def holder(transactional_db):
    """An account created by a reminder's magic link (no password), member of a client with one token."""
    user = get_user_model()(username="claire.tech@agglo.example.org", email="claire.tech@agglo.example.org")
    user.set_unusable_password()
    user.save()
    client = ClientFactory(name="Communauté d'agglomération du Pays de la Haute-Vallée")
    client.members.add(user)
    token = issue_token(client=client, label="Portail des aides économiques").token
    return user, token


def test_login_link_end_to_end(page, live_server, holder, settings, celery_eager):
    user, token = holder
    settings.SITE_URL = live_server.url
    page.goto(f"{live_server.url}/jetons/{token.public_id}/")
    assert "/connexion/" in page.url
    shot(page, "page")
    page.fill("#id_email", "Claire.Tech@AGGLO.example.org")
    page.get_by_role("button", name="Recevoir un lien de connexion").click()
    page.wait_for_url("**/connexion/lien/envoye/")
    assert "Si un compte existe pour cette adresse" in page.inner_text("main")
    shot(page, "link_sent")

    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == [user.email]
    link = re.search(r"https?://\S+/connexion/lien/\?\S+", message.body).group(0)
    assert link.startswith(live_server.url)

    page.goto(link)
    assert "claire.tech@agglo.example.org" in page.inner_text("main")
    shot(page, "link_confirm")
    page.get_by_role("button", name="Continuer").click()
    page.wait_for_url(f"**/jetons/{token.public_id}/")
    assert "Portail des aides économiques" in page.inner_text("main")
    assert user.username in page.inner_text("header")
    page.goto(f"{live_server.url}/")
    assert "Portail des aides économiques" in page.inner_text("main")
    shot(page, "link_dashboard")

    # Signed out, the same link no longer works.
    page.get_by_role("button", name="Se déconnecter").click()
    page.wait_for_url("**/connexion/")
    assert "Vous êtes déconnecté(e)" in page.inner_text("main")
    page.goto(link)
    assert "n'est plus valable" in page.inner_text("main")
    shot(page, "link_spent")


def test_password_login_errors_then_success(page, live_server, transactional_db):
    user = UserFactory(username="ana@example.org")
    ClientFactory(name="Mairie de Bourg-la-Reine").members.add(user)
    page.goto(f"{live_server.url}/connexion/")
    page.fill("#id_username", "ana@example.org")
    page.fill("#id_password", "mauvais mot de passe")
    page.click("form[action='/connexion/'] button[type=submit]")
    assert "Adresse e-mail ou mot de passe incorrect" in page.inner_text("main")
    shot(page, "password_error")
    page.fill("#id_password", PASSWORD)
    page.click("form[action='/connexion/'] button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")
    assert "Tableau de bord" in page.inner_text("main")


def test_password_reset_and_english_login(page, live_server, holder, settings, celery_eager):
    user, _ = holder
    settings.SITE_URL = live_server.url
    page.goto(f"{live_server.url}/connexion/")
    page.get_by_role("link", name="Mot de passe oublié ou jamais défini ?").click()
    page.fill("#id_email", user.email)
    shot(page, "reset_form")
    page.get_by_role("button", name="Recevoir le lien").click()
    page.wait_for_url("**/connexion/mot-de-passe/envoye/")
    link = re.search(r"https?://\S+/connexion/mot-de-passe/\S+/", mail.outbox[0].body).group(0)
    page.goto(link)
    page.fill("#id_new_password1", "un mot de passe tout neuf")
    page.fill("#id_new_password2", "un mot de passe tout neuf")
    shot(page, "reset_confirm")
    page.get_by_role("button", name="Enregistrer le mot de passe").click()
    page.wait_for_url("**/connexion/mot-de-passe/termine/")
    page.get_by_role("main").get_by_role("link", name="Se connecter").click()
    page.fill("#id_username", user.email)
    page.fill("#id_password", "un mot de passe tout neuf")
    page.click("form[action='/connexion/'] button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")
    page.get_by_role("button", name="Se déconnecter").click()
    page.wait_for_url("**/connexion/")

    page.get_by_role("button", name="English").click()
    page.wait_for_url("**/connexion/")
    main = page.inner_text("main")
    assert "With your password" in main and "Receive a login link" in main
    shot(page, "page_en")
