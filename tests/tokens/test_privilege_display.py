"""Privileges read by their labels, with the code in small monospace: one formatting function for every page."""

import pytest
from django.urls import reverse

from tests.factories import ClientFactory, ClientMembershipFactory, UserFactory, issue_token
from tests.tokens.test_requests import full_data, submitted_request
from tokens import selectors
from tokens.models import Privilege
from tokens.privilege_display import privilege_html, privileges_html

pytestmark = pytest.mark.django_db

URSSAF = "Attestation de vigilance (URSSAF)"
URSSAF_HTML = (
    f'<span class="tkm-privilege">{URSSAF} <small class="tkm-privilege__code">'
    "<code>attestations_sociales_acoss</code></small></span>"
)


def test_privilege_html_is_label_then_code_escaped():
    assert privilege_html(Privilege.objects.get(code="attestations_sociales_acoss")) == URSSAF_HTML
    evil = Privilege(code="x", label="<script>alert(1)</script>")
    assert "<script>" not in privilege_html(evil) and "&lt;script&gt;" in privilege_html(evil)
    assert "<code>y</code>" in privilege_html(Privilege(code="y", label=""))  # no label: the code stands in
    pair = privileges_html(
        Privilege.objects.filter(code__in=["entreprises", "associations"]).order_by("code")
    )
    assert pair.count("<br>") == 1 and pair.index("associations") < pair.index("entreprises")


def test_admin_token_list_and_page_show_labels(admin_client):
    issued = issue_token(label="Marchés", privileges=("attestations_sociales_acoss",))
    body = admin_client.get(reverse("admin:tokens_token_changelist")).content.decode()
    assert URSSAF_HTML in body
    body = admin_client.get(reverse("admin:tokens_token_change", args=[issued.token.pk])).content.decode()
    assert URSSAF_HTML in body


def test_admin_searches_ignore_accents(admin_client):
    issue_token(client=ClientFactory(name="Préfecture de l'Hérault"), label="Échéancier des aides")
    issue_token(client=ClientFactory(name="Mairie de Brest"), label="Autre")
    for term in ("herault", "echeancier", "ECHÉANCIER"):
        response = admin_client.get(reverse("admin:tokens_token_changelist"), {"q": term})
        assert [t.label for t in response.context["cl"].result_list] == ["Échéancier des aides"], term
    response = admin_client.get(reverse("admin:tokens_client_changelist"), {"q": "prefecture"})
    assert [c.name for c in response.context["cl"].result_list] == ["Préfecture de l'Hérault"]


def test_request_pages_show_labels(client):
    member = UserFactory()
    organisation = ClientFactory()
    ClientMembershipFactory(client=organisation, user=member)
    data = full_data(privileges=selectors.privileges_resolve(codes=["attestations_sociales_acoss"]))
    ar = submitted_request(client=organisation, applicant=member, data=data)
    client.force_login(member)
    body = client.get(reverse("request_detail", args=[ar.public_id])).content.decode()
    assert URSSAF_HTML in body
    body = client.get(reverse("request_new")).content.decode()
    assert URSSAF_HTML in body  # the checkboxes of the request form


def test_admin_request_page_shows_labels(admin_client):
    member = UserFactory()
    organisation = ClientFactory()
    ClientMembershipFactory(client=organisation, user=member)
    data = full_data(privileges=selectors.privileges_resolve(codes=["attestations_sociales_acoss"]))
    ar = submitted_request(client=organisation, applicant=member, data=data)
    body = admin_client.get(reverse("admin:tokens_accessrequest_change", args=[ar.pk])).content.decode()
    assert URSSAF_HTML in body


def test_privilege_text_for_selects_and_calendars():
    from portal import ics
    from tokens.models import Token
    from tokens.privilege_display import privilege_text

    urssaf = Privilege.objects.get(code="attestations_sociales_acoss")
    assert privilege_text(urssaf) == f"{URSSAF} — attestations_sociales_acoss"
    assert privilege_text(Privilege(code="z", label="")) == "z"
    issued = issue_token(privileges=("attestations_sociales_acoss",))
    text = ics.calendar_for_tokens(Token.objects.filter(pk=issued.token.pk), host="h")
    unfolded = text.replace("\r\n ", "")
    assert f"Privilèges : {URSSAF} — attestations_sociales_acoss" in unfolded


def test_admin_issue_picker_and_request_diff_show_labels(admin_client):
    page = admin_client.get(reverse("admin:tokens_token_add"), follow=True).content.decode()
    assert f"{URSSAF} — attestations_sociales_acoss" in page  # the issue form's privilege picker
    from django.template import Context, Template

    rendered = Template(
        "{% load token_display %}{% privilege_code 'attestations_sociales_acoss' %}|{% privilege_code 'gone' %}"
    )
    assert (
        rendered.render(Context()) == f"{URSSAF_HTML}|gone"
    )  # a code no longer in the catalogue stays as it is


def _request_with_codes(count: int):
    member = UserFactory()
    organisation = ClientFactory()
    ClientMembershipFactory(client=organisation, user=member)
    codes = [f"diff_{count}_{n:02}" for n in range(count)]
    Privilege.objects.bulk_create([Privilege(code=code, label=f"Privilège {code}") for code in codes])
    data = full_data(privileges=selectors.privileges_resolve(codes=codes))
    return submitted_request(client=organisation, applicant=member, data=data), codes


@pytest.mark.parametrize("page", ["admin:tokens_accessrequest_change", "admin:tokens_accessrequest_action"])
def test_admin_request_diff_reads_the_catalogue_once_whatever_the_number_of_codes(admin_client, page):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    counts = {}
    for count in (2, 10):
        ar, codes = _request_with_codes(count)
        args = [ar.pk] if page.endswith("change") else [ar.pk, "validate"]
        # Once first: the process's lazy caches (content types, …) fill on the first admin page of a worker.
        admin_client.get(reverse(page, args=args))
        with CaptureQueriesContext(connection) as queries:
            body = admin_client.get(reverse(page, args=args)).content.decode()
        counts[count] = len(queries)
        for code in codes:  # each added code named by its label, code beside
            assert f"Privilège {code} <small" in body and f"<code>{code}</code>" in body
    assert counts[10] == counts[2], counts
