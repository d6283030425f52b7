"""Deprecated routes of tokenmgr's own API answer with Deprecation (RFC 9745), Sunset (RFC 8594) and Link headers."""

import uuid

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from evolutions import deprecation

pytestmark = pytest.mark.django_db

ENTRY = uuid.UUID("6f1c0b52-8f5e-4c38-9a53-3b1d0cfe2a10")


def test_deprecated_route_carries_the_headers(client, settings):
    settings.DEPRECATED_ROUTES = {
        "api:privileges": {
            "deprecation": "2026-12-01T00:00:00Z",
            "sunset": "2027-06-30",
            "evolution": str(ENTRY),
        }
    }
    response = client.get("/v2/privileges")  # no token: 401, still announced
    assert response.status_code == 401
    assert response["Deprecation"] == "@1796083200"
    assert response["Sunset"] == "Wed, 30 Jun 2027 00:00:00 GMT"
    assert response["Link"] == f'<{settings.SITE_URL}/evolutions/{ENTRY}/>; rel="deprecation"'


def test_other_routes_and_default_settings_carry_none(client, settings):
    settings.DEPRECATED_ROUTES = {
        "privileges": {"deprecation": "2026-12-01", "link": "https://example.org/x"}
    }
    response = client.get("/v2/privileges")
    assert response["Deprecation"] == "@1796083200" and "Sunset" not in response
    assert response["Link"] == '<https://example.org/x>; rel="deprecation"'
    assert "Deprecation" not in client.get("/api/evolutions")
    settings.DEPRECATED_ROUTES = {}
    assert "Deprecation" not in client.get("/v2/privileges")


@pytest.mark.parametrize(
    "routes",
    [
        {"api:privileges": {"sunset": "2027-01-01"}},
        {"api:privileges": {"deprecation": "hier"}},
        {"api:privileges": {"deprecation": "2027-02-01", "sunset": "2027-01-01"}},
        ["api:privileges"],
    ],
)
def test_bad_settings_are_refused_clearly(routes, settings):
    with pytest.raises(ImproperlyConfigured):
        deprecation.parse(routes)
    settings.DEPRECATED_ROUTES = routes
    with pytest.raises(SystemCheckError):
        call_command("check")
