"""POST /api/exposed_tokens: a reported secret of a live token contains it (revoke or flag), tells each contact once,
reveals nothing, costs nothing for noise, and never reaches a log line."""

import datetime as dt
import hashlib
import hmac
import json
import logging

import pytest
import time_machine
from django.core import mail
from django.test import Client

from tests.factories import ClientFactory, ContactFactory, issue_token
from tokens import credentials
from tokens.exposure import EXPOSED_REASON
from tokens.models import ExposureReporter, Token, TokenEvent, TokenExposure

URL = "/api/exposed_tokens"
SEEN_AT = "https://github.com/someone/project/blob/main/settings.py"

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _settings(settings):
    settings.SITE_URL = "https://jetons.example.gouv.fr"
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.EXPOSED_TOKEN_POLICY = "revoke"
    settings.RATELIMIT_EXPOSED_UNSIGNED_PER_IP = 10
    settings.RATELIMIT_EXPOSED_SIGNED_PER_IP = 600


def post(items, *, remote_addr="192.0.2.10", body: bytes | None = None, **headers):
    data = body if body is not None else json.dumps(items).encode()
    return Client(REMOTE_ADDR=remote_addr).post(
        URL, data=data, content_type="application/json", headers=headers
    )


def signed_headers(reporter_name: str, key: str, body: bytes) -> dict:
    return {
        "X-Reporter": reporter_name,
        "X-Signature": "sha256=" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest(),
    }


@pytest.fixture
def exposed():
    """A live api_gouv token with three contacts, two of whom share an address but for its case."""
    client = ClientFactory()
    contacts = [
        ContactFactory(client=client, email="alice@example.org", role="requester"),
        ContactFactory(client=client, email="ALICE@example.org", role="technical"),
        ContactFactory(client=client, email="bob@example.org", role="business"),
    ]
    return issue_token(client=client, contacts=contacts, origin="api_gouv")


def report_and_deliver(django_capture_on_commit_callbacks, items, **kwargs):
    with django_capture_on_commit_callbacks(execute=True):
        response = post(items, **kwargs)
    assert response.status_code == 200, response.content
    assert response.json() == {"status": "received"}
    return response


def test_a_real_secret_is_revoked_and_each_contact_mailed_once(
    exposed, celery_eager, django_capture_on_commit_callbacks
):
    report_and_deliver(
        django_capture_on_commit_callbacks, [{"token": exposed.secret, "url": SEEN_AT, "source": "github"}]
    )

    token = Token.objects.get(pk=exposed.token.pk)
    assert token.revoked_at is not None and token.revocation_reason == EXPOSED_REASON
    assert Client().get("/v2/privileges", {"token": exposed.secret}).status_code == 401
    (exposure,) = TokenExposure.objects.filter(token=token)
    assert (exposure.url, exposure.source, exposure.count) == (SEEN_AT, "github", 1)
    event = TokenEvent.objects.get(token=token, kind=TokenEvent.Kind.EXPOSED)
    assert event.data["url"] == SEEN_AT and exposed.secret not in json.dumps(event.data)

    assert sorted(m.to for m in mail.outbox) == [["alice@example.org"], ["bob@example.org"]]
    renewal = f"https://jetons.example.gouv.fr/jetons/{token.public_id}/renouveler/"
    for message in mail.outbox:
        html = message.alternatives[0][0]
        assert message.extra_headers["X-Token-Id"] == str(token.public_id)
        assert message.extra_headers["X-Token-Exposed"] == "revoked"
        assert renewal in message.body and renewal in html
        assert token.secret_prefix in message.body and "révoqué" in message.body
        assert exposed.secret not in message.body + html + message.subject
        # An anonymous report's address is not shown to the contacts.
        assert SEEN_AT not in message.body + html


def test_the_same_report_twice_changes_nothing_more(
    exposed, celery_eager, django_capture_on_commit_callbacks
):
    items = [{"token": exposed.secret, "url": SEEN_AT, "source": "github"}]
    report_and_deliver(django_capture_on_commit_callbacks, items)
    token = Token.objects.get(pk=exposed.token.pk)
    state = (token.revoked_at, token.revocation_reason, TokenEvent.objects.filter(token=token).count())
    sent = len(mail.outbox)

    report_and_deliver(django_capture_on_commit_callbacks, items)
    # The same secret seen elsewhere: recorded, but the contacts are not told again.
    report_and_deliver(django_capture_on_commit_callbacks, [{**items[0], "url": SEEN_AT + "#2"}])

    token.refresh_from_db()
    assert (token.revoked_at, token.revocation_reason) == state[:2]
    assert len(mail.outbox) == sent == 2
    assert TokenExposure.objects.get(token=token, url=SEEN_AT).count == 2
    assert TokenEvent.objects.filter(token=token).count() == state[2] + 1  # the new place only
    assert TokenEvent.objects.filter(token=token, kind=TokenEvent.Kind.REVOKED).count() == 1


def test_a_bad_checksum_is_refused_without_any_query(exposed, django_assert_num_queries):
    secret = credentials.generate_secret()
    wrong = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    real_with_wrong_checksum = exposed.secret[:-1] + ("A" if exposed.secret[-1] != "A" else "B")
    with django_assert_num_queries(0):
        response = post(
            [
                {"token": wrong, "url": SEEN_AT},
                {"token": real_with_wrong_checksum, "url": SEEN_AT},
                {"token": 42},
                "not an object",
                {"url": SEEN_AT},
            ]
        )
    assert response.status_code == 200 and response.json() == {"status": "received"}
    assert Token.objects.get(pk=exposed.token.pk).revoked_at is None


def test_an_unknown_secret_stores_nothing_and_answers_the_same(exposed):
    before = (TokenExposure.objects.count(), TokenEvent.objects.count())
    response = post([{"token": credentials.generate_secret(), "url": SEEN_AT, "source": "github"}])
    matched = post([{"token": exposed.secret, "url": SEEN_AT, "source": "github"}])
    assert response.status_code == matched.status_code == 200
    assert response.content == matched.content
    assert TokenExposure.objects.filter(token=exposed.token).count() == 1
    assert TokenExposure.objects.count() == before[0] + 1


def test_a_secret_without_checksum_is_looked_up_by_digest(exposed):
    legacy = "tkm_" + "Zz-_" * 10 + "abc"
    Token.objects.filter(pk=exposed.token.pk).update(secret_digest=credentials.digest(legacy))
    assert post([{"token": legacy, "url": SEEN_AT}]).status_code == 200
    assert Token.objects.get(pk=exposed.token.pk).revoked_at is not None


def test_flag_policy_only_marks(exposed, settings, celery_eager, django_capture_on_commit_callbacks):
    settings.EXPOSED_TOKEN_POLICY = "flag"
    report_and_deliver(django_capture_on_commit_callbacks, [{"token": exposed.secret, "url": SEEN_AT}])
    token = Token.objects.get(pk=exposed.token.pk)
    assert token.revoked_at is None
    assert Client().get("/v2/privileges", {"token": exposed.secret}).status_code == 200
    assert TokenExposure.objects.filter(token=token).exists()
    assert len(mail.outbox) == 2
    assert all(m.extra_headers["X-Token-Exposed"] == "flagged" for m in mail.outbox)


def test_an_expired_or_revoked_token_is_recorded_but_nobody_is_told(
    exposed, celery_eager, django_capture_on_commit_callbacks
):
    from tokens.services import token_revoke

    token_revoke(token=exposed.token, by=None, reason="plus utilisé")
    report_and_deliver(django_capture_on_commit_callbacks, [{"token": exposed.secret, "url": SEEN_AT}])
    assert TokenExposure.objects.filter(token=exposed.token).exists()
    assert Token.objects.get(pk=exposed.token.pk).revocation_reason == "plus utilisé"
    assert mail.outbox == []


def test_a_flood_is_rate_limited(settings, exposed):
    settings.RATELIMIT_EXPOSED_UNSIGNED_PER_IP = 3
    noise = [{"token": "tkm_noise"}]
    # Fixed windows: every request in the same one, whatever the machine's speed (unpinned, the fourth request could
    # open a new window on a busy machine).
    with time_machine.travel(dt.datetime(2026, 3, 12, 9, 0, 5, tzinfo=dt.UTC), tick=False):
        _flood(noise)


def _flood(noise):
    assert [post(noise).status_code for _ in range(3)] == [200, 200, 200]
    response = post(noise)
    assert response.status_code == 429
    assert response.json()["errors"][0]["code"] == "rate_limited"
    assert int(response["Retry-After"]) >= 1
    assert post(noise, remote_addr="192.0.2.11").status_code == 200  # another client is not held back
    # X-Forwarded-For from a client that is not a trusted proxy changes nothing.
    assert post(noise, HTTP_X_FORWARDED_FOR="198.51.100.1").status_code == 429


def test_a_signed_reporter_gets_the_higher_limit(settings, exposed):
    settings.RATELIMIT_EXPOSED_UNSIGNED_PER_IP = 1
    settings.RATELIMIT_EXPOSED_SIGNED_PER_IP = 5
    ExposureReporter.objects.create(name="scanner", key="k" * 40)
    body = json.dumps([{"token": "tkm_noise", "url": SEEN_AT, "source": "scanner"}]).encode()
    with time_machine.travel(dt.datetime(2026, 3, 12, 10, 0, 5, tzinfo=dt.UTC), tick=False):  # one window
        headers = signed_headers("scanner", "k" * 40, body)
        assert [post(None, body=body, **headers).status_code for _ in range(5)] == [200] * 5
        assert post(None, body=body, **headers).status_code == 429
        assert [post(None, body=body).status_code for _ in range(2)] == [200, 429]


def test_a_signed_report_shows_where_the_secret_was_seen(
    exposed, celery_eager, django_capture_on_commit_callbacks
):
    reporter = ExposureReporter.objects.create(name="scanner", key="s3cr3t-key")
    body = json.dumps([{"token": exposed.secret, "url": SEEN_AT, "source": "github"}]).encode()
    with django_capture_on_commit_callbacks(execute=True):
        response = post(None, body=body, **signed_headers("scanner", "s3cr3t-key", body))
    assert response.status_code == 200
    assert TokenExposure.objects.get(token=exposed.token).reporter == reporter
    assert all(SEEN_AT in m.body for m in mail.outbox) and len(mail.outbox) == 2


@pytest.mark.parametrize("case", ["wrong key", "unknown reporter", "inactive reporter", "no signature"])
def test_a_wrong_signature_is_refused(case, exposed):
    ExposureReporter.objects.create(name="scanner", key="right-key", active=case != "inactive reporter")
    body = json.dumps([{"token": exposed.secret, "url": SEEN_AT}]).encode()
    headers = signed_headers(
        "other" if case == "unknown reporter" else "scanner",
        "wrong-key" if case == "wrong key" else "right-key",
        body,
    )
    if case == "no signature":
        del headers["X-Signature"]
    response = post(None, body=body, **headers)
    assert response.status_code == 401
    assert response.json()["errors"][0]["code"] == "invalid_signature"
    assert Token.objects.get(pk=exposed.token.pk).revoked_at is None
    assert not TokenExposure.objects.exists()


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{not json", 400),
        (b"\xff\xfe", 400),
        (b'{"token": "tkm_x"}', 422),
        (json.dumps([{"token": "tkm_x"}] * 101).encode(), 422),
    ],
)
def test_bad_bodies_get_the_json_error_shape(body, status, db):
    response = post(None, body=body)
    assert response.status_code == status
    (error,) = response.json()["errors"]
    assert set(error) == {"code", "title", "detail"}


def test_a_body_too_large_is_refused_before_it_is_read(settings, db):
    settings.EXPOSED_TOKENS_MAX_BODY_BYTES = 100
    response = post([{"token": "tkm_" + "x" * 200}])
    assert response.status_code == 413
    assert response.json()["errors"][0]["code"] == "payload_too_large"


def test_the_reported_secret_never_reaches_a_log_line(
    exposed, caplog, celery_eager, django_capture_on_commit_callbacks, settings
):
    """Every record of every logger, at DEBUG, before any handler's redaction: the secrets are not there, whatever
    their shape (an imported secret has none that a last-resort pattern could catch)."""
    legacy = issue_token(client=exposed.token.client, contacts=0)
    imported_secret = "imported-legacy-secret-4f9a0c2e77d1"
    Token.objects.filter(pk=legacy.token.pk).update(secret_digest=credentials.digest(imported_secret))
    settings.ADMINS = [("Admin", "admin@example.gouv.fr")]
    unknown = credentials.generate_secret()
    bad = unknown[:-1] + ("A" if unknown[-1] != "A" else "B")
    caplog.set_level(logging.DEBUG)
    for name in ("django.request", "django.server", "django.db.backends", "tokenmgr", "celery"):
        caplog.set_level(logging.DEBUG, logger=name)
    items = [
        {"token": exposed.secret, "url": SEEN_AT, "source": "github"},
        {"token": imported_secret, "url": SEEN_AT, "source": "github"},
        {"token": unknown},
        {"token": bad},
    ]
    report_and_deliver(django_capture_on_commit_callbacks, items)
    post(None, body=b"[" + json.dumps(items[0]).encode())  # a malformed body holding a secret: 400
    assert len(mail.outbox) == 3  # alice, bob, and the ADMINS for the token without contacts
    assert caplog.records  # the capture works (SQL of the report at DEBUG, at least)
    for record in caplog.records:
        text = record.getMessage() + (record.exc_text or "") + repr(record.args)
        for secret in (exposed.secret, imported_secret, unknown, bad):
            assert secret not in text, record.name
