"""The public page (filters, upcoming sunsets first, corrections shown), an entry's page, the JSON list (in the
OpenAPI document) and the Atom feed."""

import datetime as dt
from xml.etree import ElementTree

import pytest
from django.utils import timezone

from evolutions import services

from .conftest import endpoint_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def published(make_evolution):
    now = timezone.now()
    soon, later = now + dt.timedelta(days=30), now + dt.timedelta(days=200)
    entries = {
        "plain": make_evolution(
            title="Nouvelle source INSEE", kind="data_source", endpoints=[endpoint_of("entreprises")]
        ),
        "later": make_evolution(
            title="Retrait tardif",
            endpoints=[endpoint_of("associations")],
            deprecation_at=now,
            sunset_at=later,
        ),
        "soon": make_evolution(
            title="Retrait proche", endpoints=[endpoint_of("entreprises")], deprecation_at=now, sunset_at=soon
        ),
        "past": make_evolution(
            title="Retrait passé",
            endpoints=[endpoint_of("entreprises")],
            deprecation_at=now - dt.timedelta(days=60),
            sunset_at=now - dt.timedelta(days=1),
        ),
    }
    for entry in entries.values():
        services.evolution_publish(evolution=entry)
    make_evolution(title="Brouillon secret")
    return entries


def titles(html: str, names) -> list[str]:
    return sorted((n for n in names if n in html), key=html.index)


def test_page_lists_upcoming_sunsets_first_and_hides_drafts(client, published):
    response = client.get("/evolutions/")
    html = response.content.decode()
    assert response.status_code == 200
    order = titles(html, ["Retrait proche", "Retrait tardif", "Nouvelle source INSEE", "Retrait passé"])
    assert order[:2] == ["Retrait proche", "Retrait tardif"]
    assert "Brouillon secret" not in html
    assert 'href="/evolutions/feed/atom/"' in html and 'href="/api/evolutions"' in html
    assert 'type="application/atom+xml"' in html


def test_page_filters_by_kind_and_endpoint(client, published):
    html = client.get("/evolutions/", {"kind": "data_source"}).content.decode()
    assert "Nouvelle source INSEE" in html and "Retrait proche" not in html
    path = endpoint_of("associations").path
    html = client.get("/evolutions/", {"endpoint": path}).content.decode()
    assert "Retrait tardif" in html and "Retrait proche" not in html


def test_page_reports_an_unknown_filter_without_crashing(client, published):
    response = client.get("/evolutions/", {"kind": "<script>", "endpoint": "nope"})
    assert response.status_code == 400
    assert "valeur inconnue" in response.content.decode() and "<script>" not in response.content.decode()


def test_markdown_body_is_sanitised(client, make_evolution):
    entry = make_evolution(body="**gras** <script>alert(1)</script> [x](javascript:alert(1))")
    services.evolution_publish(evolution=entry)
    html = client.get(f"/evolutions/{entry.public_id}/").content.decode()
    assert "<strong>gras</strong>" in html
    assert "<script>alert" not in html and "javascript:alert" not in html


def test_entry_page_shows_its_corrections(client, published):
    entry = published["soon"]
    services.evolution_correct(
        evolution=entry, note="Date décalée d'une semaine", sunset_at=entry.sunset_at + dt.timedelta(days=7)
    )
    html = client.get(f"/evolutions/{entry.public_id}/").content.decode()
    assert "corrigé le" in html and "Date décalée d&#x27;une semaine" in html
    assert client.get("/evolutions/00000000-0000-4000-8000-000000000000/").status_code == 404


def test_draft_entry_page_is_not_found(client, make_evolution):
    assert client.get(f"/evolutions/{make_evolution().public_id}/").status_code == 404


def test_json_list_same_order_and_shape(client, published):
    response = client.get("/api/evolutions")
    assert response.status_code == 200
    data = response.json()["evolutions"]
    assert [e["title"] for e in data][:2] == ["Retrait proche", "Retrait tardif"]
    soon = data[0]
    assert soon["kind"] == "endpoints" and soon["privileges"] and soon["endpoints"]
    assert soon["sunset_at"] and soon["revision"] == 1 and soon["url"].endswith(f"/evolutions/{soon['id']}/")
    assert [
        e["title"] for e in client.get("/api/evolutions", {"kind": "data_source"}).json()["evolutions"]
    ] == ["Nouvelle source INSEE"]


def test_json_list_rejects_unknown_filters_in_the_error_shape(client, published):
    response = client.get("/api/evolutions", {"kind": "bogus"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["code"]


def test_json_list_is_in_the_openapi_document(client):
    spec = client.get("/api/openapi.json").json()
    operation = spec["paths"]["/api/evolutions"]["get"]
    assert {p["name"] for p in operation["parameters"]} >= {"kind", "endpoint"}


def test_atom_feed(client, published):
    response = client.get("/evolutions/feed/atom/")
    assert response.status_code == 200 and response["Content-Type"].startswith("application/atom+xml")
    ns = {"a": "http://www.w3.org/2005/Atom"}
    feed = ElementTree.fromstring(response.content)
    entries = feed.findall("a:entry", ns)
    assert len(entries) == 4
    assert {e.find("a:id", ns).text for e in entries} == {
        f"urn:uuid:{p.public_id}" for p in published.values()
    }
