import re

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings

pytestmark = pytest.mark.django_db

JSON_ROUTES = {
    ("get", "/v2/privileges"),
    ("get", "/api/watchdoge/stats/provider_availabilities"),
    ("get", "/api/watchdoge/dashboard/current_status"),
    ("get", "/api/incidents"),
    ("post", "/api/watchdoge/calls"),
}


def test_openapi_document(client):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    doc = response.json()
    assert doc["openapi"].startswith("3.")
    operations = {(m, p) for p, item in doc["paths"].items() for m in item}
    assert operations >= JSON_ROUTES
    for path, item in doc["paths"].items():
        for method, op in item.items():
            codes = set(op["responses"])
            assert "200" in codes, (method, path)
            assert "429" in codes, (method, path)
            for code, resp in op["responses"].items():
                if code.startswith(("4", "5")):
                    assert resp["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorOut")
    stats = doc["paths"]["/api/watchdoge/stats/provider_availabilities"]["get"]
    params = {p["name"]: p for p in stats["parameters"]}
    assert len(params["endpoint"]["schema"]["enum"]) == 25 and params["endpoint"]["required"]
    day = doc["components"]["schemas"]["DayCounts"]
    assert set(day["properties"]) == {"total", "404", "502", "503", "504"}


def test_openapi_validates_against_the_specification(client):
    from jsonschema_rs import validator_for  # noqa: F401  (schemathesis dependency; import checks availability)

    # schemathesis refuses an invalid document when it loads it
    schema = schemathesis.openapi.from_dict(client.get("/api/openapi.json").json())
    assert len(list(schema.get_all_operations())) >= len(JSON_ROUTES)


def test_swagger_ui_is_served_locally(client):
    html = client.get("/api/docs/").content.decode()
    assert "swagger" in html.lower()
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
    assert urls, html
    for url in urls:
        assert url.startswith("/"), url  # no CDN
    for url in urls:
        if url.startswith("/static/"):
            assert client.get(url).status_code == 200, url
    assert "cdn" not in html.lower()


@pytest.fixture(autouse=True)
def _keep_test_connection():
    """Like Django's test client: the raw WSGI app must not close the test's connection between requests."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


schemathesis.serializer.alias("application/x-ndjson", "text/plain")
schema = schemathesis.openapi.from_wsgi("/api/openapi.json", get_wsgi_application())


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_schemathesis(case):
    """Generated requests (valid and invalid) against the in-process app: no 5xx, answers match the document."""
    case.call_and_validate()
