"""One authentication for the JSON API: the same bearer parsing and the same 401 answers on every token route."""

import pytest

from tokenmgr.api_auth import UNAUTHORIZED
from tokenmgr.security import bearer_token
from tokens.selectors import TokenCheck

pytestmark = pytest.mark.django_db


def test_every_failed_check_has_its_answer():
    assert set(UNAUTHORIZED) == {c.value for c in TokenCheck} - {TokenCheck.OK.value}


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Bearer abc", "abc"),
        ("bearer  abc ", "abc"),
        ("BEARER abc", "abc"),
        ("Basic abc", ""),
        ("", ""),
        ("Bearer", ""),
    ],
)
def test_bearer_parsing(rf, header, expected):
    assert bearer_token(rf.get("/", HTTP_AUTHORIZATION=header)) == expected


@pytest.mark.parametrize("scheme", ["Bearer", "bearer"])
def test_both_token_routes_read_the_header_alike(client, scheme):
    """An unknown token in the header is read (invalid, not missing) by /v2/privileges and by the ingestion route."""
    header = {"HTTP_AUTHORIZATION": f"{scheme} tkm_unknown"}
    privileges = client.get("/v2/privileges", **header)
    calls = client.post("/api/watchdoge/calls", data=b"", content_type="application/x-ndjson", **header)
    assert privileges.status_code == calls.status_code == 401
    assert privileges.json() == calls.json()
    assert privileges.json()["errors"][0]["code"] == "invalid_token"
