"""The exposed-token report counter on /metrics: one sample per outcome and signature."""

import json

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from tests.factories import issue_token
from tokenmgr.client_ip import parse_trusted_proxies
from tokens import credentials

NAME = "tokenmgr_exposed_token_reports_total"


def scrape() -> dict[tuple[str, str], float]:
    body = Client(REMOTE_ADDR="127.0.0.1").get("/metrics").content.decode()
    return {
        (s.labels["outcome"], s.labels["signed"]): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
        if s.name == NAME
    }


@pytest.mark.django_db
def test_reports_are_counted_by_outcome(settings):
    settings.METRICS_ALLOWED_IPS = parse_trusted_proxies("127.0.0.1")
    settings.RATELIMIT_EXPOSED_UNSIGNED_PER_IP = 100
    issued = issue_token()
    before = scrape()
    wrong = issued.secret[:-1] + ("A" if issued.secret[-1] != "A" else "B")
    items = [
        {"token": issued.secret, "url": "https://example.org/1"},
        {"token": credentials.generate_secret()},
        {"token": credentials.generate_secret()},
        {"token": wrong},
        {"token": None},
    ]
    response = Client(REMOTE_ADDR="192.0.2.50").post(
        "/api/exposed_tokens", data=json.dumps(items), content_type="application/json"
    )
    assert response.status_code == 200
    after = scrape()
    delta = {key: after.get(key, 0) - before.get(key, 0) for key in after}
    assert delta[("matched", "no")] == 1
    assert delta[("unmatched", "no")] == 2
    assert delta[("invalid", "no")] == 2
