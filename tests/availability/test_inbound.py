"""Hostile input on POST /api/watchdoge/calls: body and line limits, per-token idempotency keys and permission."""

import io

import pytest
import time_machine
from django.contrib.auth.models import Group, Permission
from django.test.client import FakePayload

from availability.models import IngestBatch
from availability.services import LineReader, OverlongLine
from tests.factories import ClientMembershipFactory, UserFactory, issue_token

from .conftest import EP, STATS, line, paris

pytestmark = pytest.mark.django_db
NOW = paris(2026, 11, 27, 10, 15)
CALLS = "/api/watchdoge/calls"


def ingest_permission() -> Permission:
    return Permission.objects.get(codename="ingest_calls", content_type__app_label="availability")


def shipper(**user_fields) -> str:
    issued = issue_token()
    user = UserFactory(**user_fields)
    user.user_permissions.add(ingest_permission())
    ClientMembershipFactory(client=issued.token.client, user=user)
    return issued.secret


def post(client, body: bytes | str, secret: str, **headers):
    headers["Authorization"] = f"Bearer {secret}"
    data = body.encode() if isinstance(body, str) else body
    return client.generic("POST", CALLS, data, content_type="application/x-ndjson", headers=headers)


def day_total(client) -> int:
    with time_machine.travel(NOW, tick=False):
        stats = client.get(STATS, {"endpoint": EP, "period": "1h"}).json()
    return stats["days_availability"]["2026-11-27"]["total"]


@pytest.fixture
def reads(monkeypatch):
    """Sizes of every read of the request body stream (the test client's wsgi.input)."""
    sizes = []
    read, readline = FakePayload.read, FakePayload.readline

    def spy_read(self, size=-1, /):
        sizes.append(size)
        return read(self, size)

    def spy_readline(self, size=-1, /):
        sizes.append(size)
        return readline(self, size)

    monkeypatch.setattr(FakePayload, "read", spy_read)
    monkeypatch.setattr(FakePayload, "readline", spy_readline)
    return sizes


# ---------------------------------------------------------------- body and line limits
def test_body_over_the_limit_is_413_before_reading(client, settings, reads):
    settings.AVAILABILITY_INGEST_MAX_BODY_BYTES = 1000
    secret = shipper()
    body = "\n".join(line(NOW) for _ in range(20))
    assert len(body) > 1000
    response = post(client, body, secret)
    assert response.status_code == 413
    error = response.json()["errors"][0]
    assert set(error) == {"code", "title", "detail"}
    assert error["code"] == "payload_too_large"
    assert reads == []  # refused on Content-Length: not a byte read
    assert IngestBatch.objects.count() == 0
    settings.AVAILABILITY_INGEST_MAX_BODY_BYTES = len(body)
    assert post(client, body, secret).json()["accepted"] == 20


def test_body_is_read_line_by_line_never_whole(client, settings, reads):
    settings.AVAILABILITY_INGEST_MAX_LINE_BYTES = 200
    secret = shipper()
    body = "\n".join(line(NOW) for _ in range(500))
    response = post(client, body, secret)
    assert response.json()["accepted"] == 500
    assert len(body) > 20_000
    assert reads and max(reads) <= 201 and -1 not in reads


def test_overlong_line_is_rejected_with_its_number(client, settings, reads):
    settings.AVAILABILITY_INGEST_MAX_LINE_BYTES = 200
    secret = shipper()
    huge = '{"timestamp": "' + "9" * 300_000 + '"}'
    body = "\n".join([line(NOW), huge, line(NOW, 502), "x" * 201, "y" * 199, line(NOW)])
    response = post(client, body, secret)
    assert response.status_code == 200
    assert response.json()["accepted"] == 3
    assert response.json()["errors"] == [
        {"line": 2, "detail": "ligne trop longue (plus de 200 octets)"},
        {"line": 4, "detail": "ligne trop longue (plus de 200 octets)"},
        {"line": 5, "detail": "JSON invalide"},
    ]
    assert max(reads) <= LineReader.SKIP_BYTES  # the long line was skipped in bounded pieces
    assert day_total(client) == 3


def test_line_reader_offsets_and_limit():
    data = b"a\n" + b"b" * 10 + b"\nccc\nd"
    reader = LineReader(io.BytesIO(data).readline, max_line_bytes=5)
    out = list(reader)
    assert out[0] == b"a\n" and type(out[1]) is OverlongLine and out[2:] == [b"ccc\n", b"d"]
    assert reader.offset == len(data)
    # A limit cuts the stream there: the cut line is an ordinary (bad) line.
    reader = LineReader(io.BytesIO(data).readline, max_line_bytes=5, limit=7)
    assert list(reader) == [b"a\n", b"bbbbb"] and reader.offset == 7


def test_chunked_body_without_length_is_411(client):
    secret = shipper()
    response = client.generic(
        "POST",
        CALLS,
        b"",
        content_type="application/x-ndjson",
        headers={"Authorization": f"Bearer {secret}", "Transfer-Encoding": "chunked"},
    )
    assert response.status_code == 411
    assert set(response.json()["errors"][0]) == {"code", "title", "detail"}


# ---------------------------------------------------------------- idempotency keys, per token
def test_idempotency_keys_are_scoped_per_token(client):
    alice, mallory = shipper(), shipper()
    first = post(client, "\n".join(line(NOW) for _ in range(3)), alice, **{"Idempotency-Key": "k-1"})
    assert first.json()["replayed"] is False
    # Another token with the same key: its own batch, counted, not the first one's result.
    other = post(client, "\n".join(line(NOW) for _ in range(2)), mallory, **{"Idempotency-Key": "k-1"})
    assert other.json() == {**other.json(), "accepted": 2, "replayed": False}
    # Each token's retry is a replay of its own batch.
    again = post(client, line(NOW), alice, **{"Idempotency-Key": "k-1"})
    assert (again.json()["accepted"], again.json()["replayed"]) == (3, True)
    again = post(client, line(NOW), mallory, **{"Idempotency-Key": "k-1"})
    assert (again.json()["accepted"], again.json()["replayed"]) == (2, True)
    assert day_total(client) == 5
    assert IngestBatch.objects.filter(key="k-1").count() == 2


# ---------------------------------------------------------------- permission per token
def test_a_superuser_member_does_not_grant_ingestion(client):
    issued = issue_token()
    ClientMembershipFactory(client=issued.token.client, user=UserFactory(is_superuser=True, is_staff=True))
    response = post(client, line(NOW), issued.secret)
    assert response.status_code == 403
    assert set(response.json()["errors"][0]) == {"code", "title", "detail"}


def test_permission_through_a_group(client):
    issued = issue_token()
    group = Group.objects.create(name="expéditeurs de journaux")
    group.permissions.add(ingest_permission())
    user = UserFactory()
    ClientMembershipFactory(client=issued.token.client, user=user)
    assert post(client, line(NOW), issued.secret).status_code == 403
    user.groups.add(group)
    assert post(client, line(NOW), issued.secret).status_code == 200


def test_an_explicit_permission_of_a_superuser_counts(client):
    assert post(client, line(NOW), shipper(is_superuser=True)).status_code == 200


def test_inactive_member_or_other_client_does_not_grant(client):
    assert post(client, line(NOW), shipper(is_active=False)).status_code == 403
    holder = UserFactory()
    holder.user_permissions.add(ingest_permission())
    ClientMembershipFactory(client=issue_token().token.client, user=holder)
    assert post(client, line(NOW), issue_token().secret).status_code == 403
