"""The dashboard's tools in Chromium: privileges by their labels, the secret shown once (monospace, copy button),
search by a pasted secret and without accents, the CSV export, the mobile cards, and a superseded token's check."""

from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import expect

from tests.browser.conftest import SHOTS, save_screenshot
from tests.browser.test_portal import integrator, login  # noqa: F401 - the shared scenario fixture
from tests.factories import issue_token
from tokens.models import Token
from tokens.services import token_supersede

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

URSSAF = "Attestation de vigilance (URSSAF)"


def shot(page, name):
    save_screenshot(page, f"portal_{name}")


def test_privileges_read_by_label_with_a_small_monospace_code(page, live_server, integrator):  # noqa: F811
    user, client, tokens = integrator
    login(page, live_server, user.email)
    row = page.locator("#tokens-table tbody tr", has_text="Marchés publics")
    privilege = row.locator(".tkm-privilege", has_text=URSSAF)
    expect(privilege).to_have_count(1)
    code = privilege.locator("code")
    expect(code).to_have_text("attestations_sociales_acoss")
    style = code.evaluate(
        "e => { const s = getComputedStyle(e); return [s.fontFamily, s.textTransform, parseFloat(s.fontSize)]; }"
    )
    label_size = privilege.evaluate("e => parseFloat(getComputedStyle(e).fontSize)")
    assert "monospace" in style[0] and style[1] == "none" and style[2] < label_size
    assert privilege.evaluate("e => getComputedStyle(e).textTransform") == "none"  # never upper case
    shot(page, "privileges_labels")


def test_secret_shown_once_in_monospace_and_copied(browser, live_server, integrator):  # noqa: F811
    user, client, tokens = integrator
    token = tokens[1].token
    Token.objects.filter(pk=token.pk).update(pickup_pending_since=timezone.now())
    context = browser.new_context(viewport={"width": 1280, "height": 1000}, locale="fr-FR")
    context.set_default_timeout(20_000)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page = context.new_page()
    login(page, live_server, user.email)
    page.goto(live_server.url + reverse("token_pickup", args=[token.public_id]))
    page.get_by_role("button", name="Afficher le secret").click()
    secret_field = page.locator("#token-secret")
    secret = secret_field.input_value()
    assert secret.startswith("tkm_")
    assert "monospace" in secret_field.evaluate("e => getComputedStyle(e).fontFamily")
    assert secret_field.get_attribute("readonly") is not None
    status = page.locator("#token-secret-status")
    expect(status).to_have_text("")
    page.locator("#copy-secret").click()
    expect(status).to_have_text("Copié")
    assert page.evaluate("navigator.clipboard.readText()") == secret
    shot(page, "secret_copied")
    context.close()


def test_secret_page_without_javascript_keeps_the_text_selectable(browser, live_server, integrator):  # noqa: F811
    user, client, tokens = integrator
    token = tokens[1].token
    Token.objects.filter(pk=token.pk).update(pickup_pending_since=timezone.now())
    context = browser.new_context(java_script_enabled=False, locale="fr-FR")
    context.set_default_timeout(20_000)
    page = context.new_page()
    login(page, live_server, user.email)
    page.goto(live_server.url + reverse("token_pickup", args=[token.public_id]))
    page.get_by_role("button", name="Afficher le secret").click()
    expect(page.locator("#token-secret")).to_be_visible()
    expect(page.locator("#copy-secret")).to_be_hidden()  # a button that could not work is not offered
    page.locator("#token-secret").select_text()
    selected = page.locator("#token-secret").evaluate(
        "e => e.value.substring(e.selectionStart, e.selectionEnd)"
    )
    assert selected.startswith("tkm_") and len(selected) > 40
    context.close()


def test_search_without_accents_and_by_pasted_secret(page, live_server, integrator):  # noqa: F811
    user, client, tokens = integrator
    login(page, live_server, user.email)
    page.fill("#id_q", "etat civil")
    page.click("form[role=search] button[type=submit]")
    expect(page.locator("#tokens-table tbody tr")).to_have_count(1)
    expect(page.locator("#tokens-table tbody tr")).to_contain_text("État civil")
    shot(page, "search_without_accents")

    # a whole secret typed in the search box goes by POST (the script moves it to the secret form)
    page.goto(f"{live_server.url}/")
    page.fill("#id_q", tokens[1].secret)
    page.click("form[role=search] button[type=submit]")
    page.wait_for_url(f"**{reverse('portal_token', args=[tokens[1].token.public_id])}")
    expect(page.locator("h1")).to_have_text("Marchés publics")

    # the dedicated field, and a secret the user may not see
    page.goto(f"{live_server.url}/")
    page.click("text=Retrouver un jeton à partir de son secret complet")
    page.fill("#id_secret", issue_token(label="Jeton d'un inconnu").secret)
    page.click("#secret-search button[type=submit]")
    expect(page.locator(".fr-alert")).to_contain_text("Aucun de vos jetons ne correspond à ce jeton.")
    assert "tkm_" not in page.url
    shot(page, "search_by_secret_none")


def test_export_link_downloads_the_filtered_list(page, live_server, integrator):  # noqa: F811
    user, client, tokens = integrator
    login(page, live_server, user.email)
    page.goto(f"{live_server.url}/?q=marches")
    expect(page.locator("#tokens-table tbody tr")).to_have_count(1)
    with page.expect_download() as info:
        page.click("#export-csv")
    download = info.value
    assert download.suggested_filename.startswith("jetons-") and download.suggested_filename.endswith(".csv")
    raw = Path(download.path()).read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    lines = raw.decode("utf-8-sig").split("\r\n")
    assert lines[0].startswith("Client;SIRET;Libellé;")
    assert len([line for line in lines[1:] if line]) == 1 and "Marchés publics" in lines[1]
    assert tokens[1].secret not in raw.decode("utf-8-sig")


def test_mobile_dashboard_shows_each_token_as_a_card(browser, live_server, integrator):  # noqa: F811
    user, client, tokens = integrator
    context = browser.new_context(viewport={"width": 375, "height": 812}, locale="fr-FR")
    context.set_default_timeout(20_000)
    page = context.new_page()
    login(page, live_server, user.email)
    rows = page.locator("#tokens-table tbody tr")
    expect(rows).to_have_count(4)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375  # no sideways scrolling
    for i in range(4):
        row = rows.nth(i)
        assert row.evaluate("e => getComputedStyle(e).display") == "block"
        box = row.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 375
        cells = row.locator("td")
        expect(cells).to_have_count(9)
        for j in range(9):  # every cell shown, named by its column
            cell = cells.nth(j)
            expect(cell).to_be_visible()
            label = cell.get_attribute("data-label")
            assert label and cell.evaluate("e => getComputedStyle(e, '::before').content") == f'"{label}"'
    first = rows.nth(0)
    for text in ("Client", "Privilèges", "Statut", "Prochain rappel", "Demande en cours"):
        assert first.locator(f"td[data-label^='{text}']").count() == 1
    # the sortable headers stay available above the cards
    expect(page.locator("#tokens-table thead a.tkm-sort").first).to_be_visible()
    shot(page, "dashboard_mobile_cards")
    rows.nth(1).screenshot(path=str(SHOTS / "portal_dashboard_mobile_one_card.png"))
    context.close()
    # on a wide screen it is still a table
    wide = browser.new_context(viewport={"width": 1280, "height": 900}, locale="fr-FR")
    page = wide.new_page()
    login(page, live_server, user.email)
    assert (
        page.locator("#tokens-table tbody tr").first.evaluate("e => getComputedStyle(e).display")
        == "table-row"
    )
    wide.close()


def test_verify_a_superseded_token(page, live_server, integrator):  # noqa: F811
    user, client, tokens = integrator
    old, new = tokens[1], issue_token(client=client, label="Marchés publics 2027")
    token_supersede(old=old.token, new=new.token, by=None)
    login(page, live_server, user.email)
    page.click("#fr-navigation >> text=Vérifier un jeton")
    page.fill("#id_secret", old.secret)
    page.click("main button[type=submit]")
    result = page.locator("#verify-result")
    expect(result).to_contain_text("Jeton remplacé")
    expect(result).to_contain_text("Marchés publics 2027")
    expect(page.locator("#verify-until")).to_contain_text("L'ancien jeton fonctionne encore jusqu'au")
    expect(result.locator(".tkm-privilege", has_text=URSSAF)).to_have_count(1)
    shot(page, "verify_superseded")
    result.get_by_role("link", name="Voir le nouveau jeton").click()
    expect(page.locator("h1")).to_have_text("Marchés publics 2027")
