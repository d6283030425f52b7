import datetime as dt

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.factories import issue_token
from tokens.models import Token
from tokens.services import token_revoke

pytestmark = pytest.mark.django_db


def error_code(response) -> str:
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"errors"}
    (error,) = body["errors"]
    assert set(error) == {"code", "title", "detail"}
    return error["code"]


def test_query_parameter(client):
    issued = issue_token(privileges=("attestations_agefiph", "actes_bilans_inpi", "entreprises"))
    response = client.get("/v2/privileges", {"token": issued.secret})
    assert response.status_code == 200
    assert response.json() == {"privileges": ["actes_bilans_inpi", "attestations_agefiph", "entreprises"]}


def test_bearer_header(client):
    issued = issue_token(privileges=("exercices",))
    response = client.get("/v2/privileges", headers={"Authorization": f"Bearer {issued.secret}"})
    assert response.status_code == 200
    assert response.json() == {"privileges": ["exercices"]}


def test_missing_token(client):
    response = client.get("/v2/privileges")
    assert response.status_code == 401
    assert error_code(response) == "missing_token"


def test_invalid_token(client):
    issue_token()
    response = client.get("/v2/privileges", {"token": "tkm_not-a-real-secret"})
    assert response.status_code == 401
    assert error_code(response) == "invalid_token"


def test_expired_token(client):
    issued = issue_token(issued_at=timezone.now() - dt.timedelta(days=600))
    response = client.get("/v2/privileges", {"token": issued.secret})
    assert response.status_code == 401
    assert error_code(response) == "expired_token"


def test_expires_at_the_exact_instant(client):
    issued = issue_token()
    with time_machine.travel(issued.token.expires_at - dt.timedelta(seconds=1), tick=False):
        assert client.get("/v2/privileges", {"token": issued.secret}).status_code == 200
    with time_machine.travel(issued.token.expires_at, tick=False):
        assert error_code(client.get("/v2/privileges", {"token": issued.secret})) == "expired_token"


def test_revoked_token(client):
    issued = issue_token()
    admin = get_user_model().objects.create_user("admin@example.org")
    token_revoke(token=issued.token, by=admin, reason="fuite")
    response = client.get("/v2/privileges", headers={"Authorization": f"Bearer {issued.secret}"})
    assert response.status_code == 401
    assert error_code(response) == "revoked_token"


def test_superseded_token_still_works_until_its_expiry(client):
    old = issue_token()
    issue_token(client=old.token.client)
    Token.objects.filter(pk=old.token.pk).update(renewed_by=Token.objects.exclude(pk=old.token.pk).get())
    assert client.get("/v2/privileges", {"token": old.secret}).status_code == 200


def test_last_used_at_updated_cheaply(client, settings):
    settings.TOKEN_LAST_USED_RESOLUTION = 300
    settings.TOKEN_CHECK_CACHE_SECONDS = 0  # one lookup per request: counted below
    issued = issue_token()
    start = dt.datetime(2026, 1, 5, 10, 0, tzinfo=dt.UTC)
    with time_machine.travel(start, tick=False):
        with CaptureQueriesContext(connection) as first:
            client.get("/v2/privileges", {"token": issued.secret})
        assert len(first) == 2  # lookup + last_used_at
        with CaptureQueriesContext(connection) as second:
            client.get("/v2/privileges", {"token": issued.secret})
        assert len(second) == 1  # within the resolution: lookup only
    issued.token.refresh_from_db()
    assert issued.token.last_used_at == start
    with time_machine.travel(start + dt.timedelta(minutes=6), tick=False):
        client.get("/v2/privileges", {"token": issued.secret})
    issued.token.refresh_from_db()
    assert issued.token.last_used_at == start + dt.timedelta(minutes=6)


@time_machine.travel(dt.datetime(2026, 3, 10, 9, 0, 5, tzinfo=dt.UTC), tick=False)
def test_rate_limit_per_token(client, settings):
    settings.RATELIMIT_PRIVILEGES_PER_TOKEN = 3
    issued = issue_token()
    responses = [client.get("/v2/privileges", {"token": issued.secret}) for _ in range(4)]
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    assert responses[0]["RateLimit-Limit"] == "3"
    assert responses[0]["RateLimit-Remaining"] == "2"
    assert int(responses[3]["Retry-After"]) >= 1
    assert error_code(responses[3]) == "rate_limited"


@time_machine.travel(dt.datetime(2026, 3, 10, 9, 0, 5, tzinfo=dt.UTC), tick=False)
def test_rate_limit_per_ip(client, settings):
    settings.RATELIMIT_PRIVILEGES_PER_IP = 2
    codes = [client.get("/v2/privileges").status_code for _ in range(3)]
    assert codes == [401, 401, 429]


@pytest.mark.parametrize(
    "path", ["/api/nope", "/v2/nope", "/api/watchdoge/unknown/route", "/v2/privileges/extra"]
)
def test_unknown_api_paths_answer_json_404(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert error_code(response) == "not_found"


def test_wrong_method_answers_json(client):
    response = client.post("/v2/privileges")
    assert response.status_code == 405
    assert error_code(response) == "method_not_allowed"


def test_database_outage_answers_json_503(client, monkeypatch):
    from django.db import OperationalError

    from tokens import api

    def boom(**kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(api, "token_check", boom)
    response = client.get("/v2/privileges", {"token": "x"})
    assert response.status_code == 503
    assert error_code(response) == "service_unavailable"


def test_secret_stored_only_as_digest():
    issued = issue_token()
    row = Token.objects.filter(pk=issued.token.pk).values().get()
    assert issued.secret not in str(row)
    assert issued.secret.startswith("tkm_") and len(issued.secret) >= 4 + 43  # 256 bits, urlsafe base64
    assert row["secret_prefix"] == issued.secret[:12]


def test_with_status_rows_load_and_filter():
    fresh = issue_token()
    gone = issue_token(issued_at=timezone.now() - dt.timedelta(days=600))
    rows = {t.pk: t.status for t in Token.objects.with_status()}
    assert rows == {fresh.token.pk: "active", gone.token.pk: "expired"}
    assert list(Token.objects.with_status().filter(status="expired")) == [gone.token]


def test_naive_datetimes_from_raw_sql_are_read_as_utc():
    """SQLite (make run) hands raw queries naive UTC datetimes; comparing them must not crash."""
    from tokens.selectors import _aware

    naive = dt.datetime(2026, 1, 5, 10, 0)  # noqa: DTZ001
    assert _aware(naive) == dt.datetime(2026, 1, 5, 10, 0, tzinfo=dt.UTC)
    aware = dt.datetime(2026, 1, 5, 10, 0, tzinfo=dt.UTC)
    assert _aware(aware) is aware and _aware(None) is None


# --- The process-local cache of token checks (settings.TOKEN_CHECK_CACHE_SECONDS) ---------------------------------


@pytest.fixture
def clock(monkeypatch):
    """The cache's clock, moved by hand (time-machine pins wall-clock time, not the monotonic clock)."""
    from tokens.selectors import check_cache

    now = [1000.0]
    monkeypatch.setattr(check_cache, "clock", lambda: now[0])
    return now


def _get(client, secret):
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/v2/privileges", {"token": secret})
    return response, len(queries)


def test_cached_check_answers_without_query(client, settings, clock):
    settings.TOKEN_CHECK_CACHE_SECONDS = 5
    issued = issue_token(privileges=("entreprises",))
    assert _get(client, issued.secret)[1] == 2  # lookup + first last_used_at
    response, queries = _get(client, issued.secret)
    assert (response.status_code, response.json(), queries) == (200, {"privileges": ["entreprises"]}, 0)
    clock[0] += 5  # aged out: looked up again
    assert _get(client, issued.secret)[1] == 1


def test_revocation_in_this_process_applies_at_once(client, settings, clock):
    settings.TOKEN_CHECK_CACHE_SECONDS = 5
    issued = issue_token()
    assert client.get("/v2/privileges", {"token": issued.secret}).status_code == 200
    admin = get_user_model().objects.create_superuser("root2@example.org", "x")
    token_revoke(token=issued.token, by=admin, reason="fuite")
    response, queries = _get(client, issued.secret)
    assert (response.status_code, error_code(response), queries) == (401, "revoked_token", 1)


def test_revocation_elsewhere_is_seen_within_the_cache_lifetime(client, settings, clock):
    """Another process's revocation sends no signal here: the cached answer lives at most TOKEN_CHECK_CACHE_SECONDS."""
    settings.TOKEN_CHECK_CACHE_SECONDS = 5
    issued = issue_token()
    assert client.get("/v2/privileges", {"token": issued.secret}).status_code == 200
    Token.objects.filter(pk=issued.token.pk).update(revoked_at=timezone.now())  # no signal, as from elsewhere
    clock[0] += 4.9
    assert client.get("/v2/privileges", {"token": issued.secret}).status_code == 200
    clock[0] += 0.1
    response = client.get("/v2/privileges", {"token": issued.secret})
    assert (response.status_code, error_code(response)) == (401, "revoked_token")


def test_expiry_is_exact_even_when_cached(client, settings, clock):
    settings.TOKEN_CHECK_CACHE_SECONDS = 5
    issued = issue_token()
    expires_at = issued.token.expires_at
    with time_machine.travel(expires_at - dt.timedelta(seconds=1), tick=False):
        assert client.get("/v2/privileges", {"token": issued.secret}).status_code == 200
    with time_machine.travel(expires_at, tick=False):
        response, queries = _get(client, issued.secret)
    assert (response.status_code, error_code(response), queries) == (401, "expired_token", 0)


def test_unknown_secrets_are_never_cached(client, settings, clock):
    settings.TOKEN_CHECK_CACHE_SECONDS = 5
    for _ in range(2):
        response, queries = _get(client, "tkm_unknown")
        assert (response.status_code, queries) == (401, 1)


def test_privilege_change_in_this_process_applies_at_once(client, settings, clock):
    from tokens.models import Privilege

    settings.TOKEN_CHECK_CACHE_SECONDS = 5
    issued = issue_token(privileges=("entreprises",))
    assert client.get("/v2/privileges", {"token": issued.secret}).json() == {"privileges": ["entreprises"]}
    issued.token.privileges.add(Privilege.objects.get(code="associations"))
    body = client.get("/v2/privileges", {"token": issued.secret}).json()
    assert body == {"privileges": ["associations", "entreprises"]}


def test_last_used_at_still_written_while_cached(client, settings, clock):
    settings.TOKEN_CHECK_CACHE_SECONDS = 3600
    settings.TOKEN_LAST_USED_RESOLUTION = 300
    issued = issue_token()
    start = dt.datetime(2026, 1, 5, 10, 0, tzinfo=dt.UTC)
    with time_machine.travel(start, tick=False):
        client.get("/v2/privileges", {"token": issued.secret})
    with time_machine.travel(start + dt.timedelta(minutes=4), tick=False):
        assert _get(client, issued.secret)[1] == 0
    with time_machine.travel(start + dt.timedelta(minutes=6), tick=False):
        assert _get(client, issued.secret)[1] == 1  # the UPDATE alone
    issued.token.refresh_from_db()
    assert issued.token.last_used_at == start + dt.timedelta(minutes=6)


def test_cache_is_bounded(settings, clock):
    from tokens.selectors import _Checked, check_cache

    for i in range(check_cache.MAX_ENTRIES + 10):
        check_cache.put(f"d{i}", _Checked(loaded_at=clock[0], token_id=i))
    assert len(check_cache._entries) <= check_cache.MAX_ENTRIES
    assert check_cache.get(f"d{check_cache.MAX_ENTRIES + 9}", 5) is not None
    assert check_cache.get("d0", 5) is None  # the oldest went first
