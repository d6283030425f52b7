"""axe-core over every page: public, integrator portal, admin as staff; no serious or critical violation.

axe-core comes from the axe-playwright-python package and is injected into the page: the browser is cut off from
every address but the test server's, so nothing is fetched from a CDN. The pages this work changed are screenshotted
under var/screenshots/a11y_*.png.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.contrib import admin
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from notifications.models import WebhookEndpoint
from tests.browser.a11y import axe_violations, blocking, describe
from tests.browser.conftest import save_screenshot
from tests.factories import ClientFactory, ClientMembershipFactory, ContactFactory, UserFactory, issue_token
from tests.tokens.test_requests import full_data
from tokens import services
from tokens.models import Contact

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery staple"
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


@pytest.fixture
def site(transactional_db, settings, tmp_path):
    """One of everything a page can show: tokens in several states, requests in several states with a PDF, a
    webhook, an incident, an integrator and a staff member who instructs."""
    from availability.models import Incident

    settings.MEDIA_ROOT = str(tmp_path)
    integrator = UserFactory(email="integ@agglo.example.org")
    staff = UserFactory(email="instructrice@tokenmgr.example", is_staff=True, is_superuser=True)
    client = ClientFactory(name="Communauté d'agglomération du Val")
    ClientMembershipFactory(client=client, user=integrator)
    contact = ContactFactory(client=client, email="tech@agglo.example.org", name="Claire Tech")
    ContactFactory(client=client, email="metier@agglo.example.org", role=Contact.Role.BUSINESS)
    now = timezone.now()
    live = issue_token(client=client, label="Portail des aides", contacts=[contact]).token
    expiring = issue_token(
        client=client, label="Marchés publics", contacts=[contact], issued_at=now - dt.timedelta(days=530)
    ).token
    revoked = issue_token(client=client, label="Ancien portail", contacts=[contact]).token
    services.token_revoke(token=revoked, by=staff, reason="Application arrêtée")

    submitted = services.access_request_create(
        client=client,
        kind="renewal",
        applicant=integrator,
        token=expiring,
        data=full_data(
            legal_basis_nature="deliberation",
            legal_basis_document=SimpleUploadedFile("deliberation-2026.pdf", PDF, "application/pdf"),
        ),
    )
    services.access_request_submit(access_request=submitted, by=integrator)
    draft = services.access_request_create(client=client, kind="new", applicant=integrator, data=full_data())
    validated = services.access_request_create(
        client=client, kind="new", applicant=integrator, data=full_data()
    )
    services.access_request_submit(access_request=validated, by=integrator)
    issued = services.access_request_validate(access_request=validated, by=staff)
    webhook = WebhookEndpoint.objects.create(
        client=client, url="https://hooks.example.fr/t", secret="whsec_x"
    )
    incident = Incident.objects.create(
        title="Lenteurs", starts_at=now - dt.timedelta(hours=3), ends_at=now - dt.timedelta(hours=1)
    )
    return {
        "integrator": integrator,
        "staff": staff,
        "live": live,
        "expiring": expiring,
        "revoked": revoked,
        "issued": issued,
        "submitted": submitted,
        "draft": draft,
        "webhook": webhook,
        "incident": incident,
    }


def public_pages(site) -> list[str]:
    return [
        reverse("login"),
        reverse("login_link_request"),  # a GET: 405 page
        reverse("password_reset"),
        reverse("signup"),
        reverse("portal_verify"),
        reverse("incidents"),
        reverse("incident_detail", args=[site["incident"].pk]),
        reverse("real_time"),
        reverse("rate_limits_help"),
        reverse("accessibility"),
        "/page-qui-n-existe-pas/",
    ]


def portal_pages(site) -> list[str]:
    live, submitted, draft = site["live"], site["submitted"], site["draft"]
    return [
        reverse("portal_dashboard"),
        reverse("portal_token", args=[live.public_id]),
        reverse("portal_token", args=[site["revoked"].public_id]),
        reverse("portal_token_revoke", args=[live.public_id]),
        reverse("portal_verify"),
        reverse("portal_access"),
        reverse("portal_calendar"),
        reverse("portal_webhooks"),
        reverse("portal_webhook", args=[site["webhook"].pk]),
        reverse("request_list"),
        reverse("request_new"),
        reverse("request_detail", args=[submitted.public_id]),
        reverse("request_detail", args=[draft.public_id]),
        reverse("request_edit", args=[draft.public_id]),
        reverse("token_extend", args=[live.public_id]),
        reverse("token_pickup", args=[site["issued"].public_id]),
        reverse("token_renew", args=[site["expiring"].public_id]),
        reverse("reauth"),
        reverse("logout"),  # a GET: 405 page
    ]


def admin_pages(site) -> list[str]:
    """The admin index, every registered model's list and add page, and the change page of its first object."""
    pages = [reverse("admin:index")]
    for model, model_admin in admin.site._registry.items():
        info = (model._meta.app_label, model._meta.model_name)
        pages.append(reverse("admin:{}_{}_changelist".format(*info)))
        if model_admin.has_add_permission(_Request(site["staff"])):
            pages.append(reverse("admin:{}_{}_add".format(*info)))
        first = model._default_manager.order_by("pk").first()
        if first is not None:
            try:
                pages.append(reverse("admin:{}_{}_change".format(*info), args=[first.pk]))
            except NoReverseMatch:
                continue
    submitted = site["submitted"]
    pages += [
        reverse("admin:tokens_accessrequest_change", args=[submitted.pk]),
        reverse("admin:tokens_accessrequest_action", args=[submitted.pk, "validate"]),
        reverse("admin:tokens_accessrequest_action", args=[submitted.pk, "refuse"]),
        reverse("admin:tokens_token_change", args=[site["revoked"].pk]),
        reverse("admin:tokens_token_issue"),
        reverse("admin:password_change"),
        reverse("admin:tokens_accessrequest_changelist") + "?state__exact=submitted",
    ]
    return pages


class _Request:
    """Enough of a request for ModelAdmin.has_add_permission."""

    def __init__(self, user):
        self.user = user


SCREENSHOTS = (
    "/accessibilite/",
    "/page-qui-n-existe-pas/",
    "/deconnexion/",
    "/real_time/",
    "/admin/",
    "/admin/tokens/accessrequest/",
    "/admin/tokens/accessrequest/1/change/",
    "/admin/tokens/token/",
    "/admin/tokens/token/add/",
)


def offline(context, base: str) -> list[str]:
    """Abort every request that does not go to the test server; returns the list of those attempted."""
    attempted: list[str] = []

    def guard(route):
        if route.request.url.startswith(base):
            route.continue_()
        else:
            attempted.append(route.request.url)
            route.abort()

    context.route("**/*", guard)
    return attempted


def audit(page, base: str, paths: list[str], prefix: str) -> list[str]:
    problems = []
    for path in dict.fromkeys(paths):
        page.goto(base + path)
        page.wait_for_load_state()
        if prefix != "public":  # still signed in: the page itself is audited, not the sign-in form
            assert "/connexion/" not in page.url and "/admin/login/" not in page.url, (path, page.url)
        found = blocking(axe_violations(page))
        if found:
            problems.append(describe(found, path))
        if path in SCREENSHOTS or (prefix == "portal" and "/demandes/" in path):
            name = re.sub(r"[^a-z0-9]+", "_", path.lower()).strip("_") or "home"
            save_screenshot(page, f"a11y_{prefix}_{name}"[:120])
    return problems


def login(page, base, url, email, submit):
    page.goto(base + url)
    page.fill("#id_username", email)
    page.fill("#id_password", PASSWORD)
    page.locator(submit).click()
    page.wait_for_load_state()
    assert "/connexion/" not in page.url and "/login/" not in page.url, page.url


def test_every_page_has_no_serious_or_critical_violation(new_context, live_server, site):
    base = live_server.url
    contexts = [new_context() for _ in range(3)]
    guards = [offline(context, base) for context in contexts]
    problems = audit(contexts[0].new_page(), base, public_pages(site), "public")

    integrator = contexts[1].new_page()
    login(integrator, base, reverse("login"), site["integrator"].email, "form[action='/connexion/'] button")
    problems += audit(integrator, base, portal_pages(site), "portal")

    staff = contexts[2].new_page()
    login(staff, base, reverse("admin:login"), site["staff"].email, "#login-form input[type=submit]")
    problems += audit(staff, base, admin_pages(site), "admin")

    assert not problems, "\n".join(problems)
    attempted = [url for guard in guards for url in guard]
    assert not attempted, attempted  # axe-core and every asset are served locally


def test_real_time_page_refresh_can_be_paused(page, live_server, transactional_db, accessible):
    """The page reloads itself (no <meta refresh>) until the reader pauses it; the choice survives a reload."""
    page.goto(live_server.url + reverse("real_time"))
    toggle = page.locator("#auto-refresh-toggle")
    assert toggle.get_attribute("aria-pressed") == "false"
    assert page.locator('meta[http-equiv="refresh"]').count() == 0
    toggle.click()
    assert toggle.get_attribute("aria-pressed") == "true"
    assert page.inner_text("#auto-refresh-state") == "Mise à jour automatique suspendue."
    page.reload()
    assert page.locator("#auto-refresh-toggle").get_attribute("aria-pressed") == "true"
    assert page.inner_text("#auto-refresh-toggle") == "Reprendre la mise à jour automatique"
    accessible(page)
    save_screenshot(page, "real_time_paused")


def focus_walk(page, presses: int) -> list[dict]:
    """Press Tab `presses` times; what got the focus each time (tag, id, text, whether it is visible)."""
    seen = []
    for _ in range(presses):
        page.keyboard.press("Tab")
        seen.append(
            page.evaluate(
                """() => { const e = document.activeElement; const r = e.getBoundingClientRect();
                   return {tag: e.tagName, id: e.id, text: (e.textContent || e.value || "").trim().slice(0, 60),
                           href: e.getAttribute("href") || "", visible: r.width > 0 && r.height > 0}; }"""
            )
        )
    return seen


def test_keyboard_only_reaches_the_skip_link_menu_filters_and_tokens(new_context, live_server, site):
    """The keyboard walk the accessibility statement reports: skip link first, then menu, filters and tokens."""
    page = new_context().new_page()
    base = live_server.url
    page.goto(base + reverse("login"))
    first = focus_walk(page, 1)[0]
    assert first["href"] == "#content" and first["text"] == "Contenu", first
    page.keyboard.press("Enter")
    assert page.url.endswith("#content")

    login(page, base, reverse("login"), site["integrator"].email, "form[action='/connexion/'] button")
    page.goto(base + reverse("portal_dashboard"))
    walk = focus_walk(page, 60)
    assert all(step["visible"] for step in walk), [s for s in walk if not s["visible"]]
    reached = {step["id"] for step in walk} | {step["href"] for step in walk}
    assert "id_within" in reached  # the dashboard filter
    assert reverse("portal_token", args=[site["live"].public_id]) in reached  # a token's page
    assert reverse("request_list") in reached  # the menu
    # a token is opened with the keyboard alone
    page.focus(f'a[href="{reverse("portal_token", args=[site["live"].public_id])}"]')
    page.keyboard.press("Enter")
    page.wait_for_url(f"**{reverse('portal_token', args=[site['live'].public_id])}")
