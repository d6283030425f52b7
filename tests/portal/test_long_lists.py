"""500 tokens on the dashboard: paginated, and the number of queries of a page does not grow with the list."""

import datetime as dt
import hashlib

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from notifications.models import Reminder, ReminderOptOut
from tests.factories import ClientFactory, ClientMembershipFactory, ContactFactory, issue_token
from tokens import validity
from tokens.models import AccessRequest, Privilege, Token

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 3, 10, 10, 0, tzinfo=dt.UTC)


def _bulk_tokens(client, n: int, start: int) -> list[Token]:
    """n tokens of `client` written in bulk (the service is exercised elsewhere), expiring over the next 18 months,
    each with two privileges and a contact; every 7th one with a sent reminder, every 11th with a pending request,
    every 13th declined."""
    now = timezone.now()
    tokens = []
    for i in range(start, start + n):
        issued = now - dt.timedelta(days=(i * 37) % 540)  # expiries spread over 18 months
        tokens.append(
            Token(
                client=client,
                label=f"Jeton n°{i:03d}",
                issued_at=issued,
                expires_at=validity.expiry_for(issued),
                origin="api_gouv" if i % 3 else "demarches_simplifiees",
                secret_prefix=f"tkm_{i:05d}",
                secret_digest=hashlib.sha256(f"bulk-{client.pk}-{i}".encode()).hexdigest(),
            )
        )
    tokens = Token.objects.bulk_create(tokens)
    privileges = list(Privilege.objects.filter(code__in=["entreprises", "associations"]))
    contact = ContactFactory(client=client)
    Token.privileges.through.objects.bulk_create(
        [Token.privileges.through(token=t, privilege=p) for t in tokens for p in privileges]
    )
    Token.contacts.through.objects.bulk_create(
        [Token.contacts.through(token=t, contact=contact) for t in tokens]
    )
    Reminder.objects.bulk_create(
        [
            Reminder(
                token=t, threshold=90, expires_at=t.expires_at, route=t.origin, status="sent", sent_at=now
            )
            for t in tokens[::7]
        ]
    )
    applicant = client.members.first()
    AccessRequest.objects.bulk_create(
        [
            AccessRequest(client=client, kind="renewal", applicant=applicant, token=t, state="submitted")
            for t in tokens[::11]
        ]
    )
    ReminderOptOut.objects.bulk_create([ReminderOptOut(token=t) for t in tokens[::13]])
    return tokens


def _queries(client, url: str) -> tuple[int, str]:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200
    return len(ctx.captured_queries), response.content.decode()


URLS = ["/", "/?page=2", "/?sort=-expires&within=200", "/?q=Jeton&origin=api_gouv&privilege=associations"]


def test_500_tokens_paginate_in_constant_queries(logged, own_client, settings):
    settings.PORTAL_PAGE_SIZE = 50
    logged_user = own_client.members.get()
    other_client = ClientFactory(name="Syndicat des eaux")
    ClientMembershipFactory(client=other_client, user=logged_user)
    with time_machine.travel(NOW, tick=False):
        issue_token(client=own_client, label="Jeton émis par le service")
        _bulk_tokens(own_client, 60, 0)
        _bulk_tokens(other_client, 40, 60)
        small = {}
        for url in URLS:
            small[url], body = _queries(logged, url)
            assert 'href="/jetons/' in body, url  # a full page to compare with, not an empty state

        _bulk_tokens(own_client, 240, 100)
        _bulk_tokens(other_client, 159, 340)
        assert Token.objects.for_user(logged_user).count() == 500
        for url in URLS:
            n, body = _queries(logged, url)
            assert n == small[url], f"{url}: {n} queries with 500 tokens, {small[url]} with 101"
            assert n <= 20
        n, body = _queries(logged, "/")
        assert "500 jetons" in body and "page 1 sur 10" in body
        assert body.count('href="/jetons/') == 50
        n_last, last = _queries(logged, "/?page=10")
        assert n_last == small["/?page=2"]
        assert "page 10 sur 10" in last and last.count('href="/jetons/') == 50
        # out-of-range pages fall back to the last one, never a 404 or a 500
        assert "page 10 sur 10" in _queries(logged, "/?page=999")[1]
        # the pagination is elided: a handful of links, not 10 (or 500 / 50 = 10 here, 1000 / 50 = 20 elsewhere)
        assert last.count('class="fr-pagination__link"') < 12
