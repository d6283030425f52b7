"""The token status rule has one SQL home (status_expression) and one Python twin (Token.status_at): they agree on
every kind of token, at window edges in TIME_ZONE, and every screen reads the same expression."""

import datetime as dt
import itertools
from zoneinfo import ZoneInfo

import pytest

from portal import selectors as portal_selectors
from tests.factories import ClientFactory, UserFactory
from tokens.admin import tokens as token_admin
from tokens.models import ClientMembership, MembershipSource, Token, TokenStatus, status_expression

pytestmark = pytest.mark.django_db

PARIS = ZoneInfo("Europe/Paris")
# Moments around the rule's edges: Paris midnight, DST changes (spring forward, fall back), a leap day, late evening.
NOWS = [
    dt.datetime(2026, 1, 15, 0, 0, tzinfo=PARIS),
    dt.datetime(2026, 3, 29, 1, 30, tzinfo=PARIS),
    dt.datetime(2026, 10, 25, 2, 30, tzinfo=PARIS),
    dt.datetime(2028, 2, 29, 23, 59, tzinfo=PARIS),
    dt.datetime(2026, 6, 30, 23, 30, tzinfo=PARIS),
]
# Expiry offsets around now: just past, now, and both sides of the 90-day horizon at several wall-clock times.
OFFSETS = [
    dt.timedelta(seconds=-1),
    dt.timedelta(0),
    dt.timedelta(seconds=1),
    dt.timedelta(days=30),
    *(dt.timedelta(days=d, hours=h) for d in (89, 90, 91) for h in (-23, -1, 0, 1, 23)),
    dt.timedelta(days=400),
]


def _tokens(now: dt.datetime) -> list[Token]:
    client = ClientFactory()
    made = []
    for n, (offset, revoked, renewed) in enumerate(itertools.product(OFFSETS, (False, True), (False, True))):
        made.append(
            Token.objects.create(
                client=client,
                issued_at=now - dt.timedelta(days=500),
                expires_at=now + offset,
                origin="api_gouv",
                secret_prefix="tkm_test",
                secret_digest=f"{now:%Y%m%d%H%M}-{n}",
                revoked_at=now - dt.timedelta(days=1) if revoked else None,
            )
        )
        if renewed:
            made[-1].renewed_by = Token.objects.create(
                client=client,
                issued_at=now,
                expires_at=now + dt.timedelta(days=540),
                origin="api_gouv",
                secret_prefix="tkm_test",
                secret_digest=f"{now:%Y%m%d%H%M}-{n}-next",
            )
            made[-1].save(update_fields=["renewed_by"])
    return made


@pytest.mark.parametrize("now", NOWS, ids=lambda n: n.isoformat())
def test_python_status_equals_sql_status(now):
    tokens = _tokens(now)
    sql = dict(
        Token.objects.filter(pk__in=[t.pk for t in tokens]).with_status(now).values_list("pk", "status")
    )
    python = {t.pk: t.status_at(now) for t in Token.objects.filter(pk__in=sql)}
    assert python == sql
    assert set(sql.values()) == set(TokenStatus.values)  # every status is exercised


def test_admin_and_portal_annotate_the_same_expression():
    now = NOWS[0]
    tokens = _tokens(now)
    ids = [t.pk for t in tokens]
    user = UserFactory()
    ClientMembership.objects.create(client=tokens[0].client, user=user, source=MembershipSource.ADMIN)
    expected = dict(
        Token.objects.filter(pk__in=ids).annotate(s=status_expression(now)).values_list("pk", "s")
    )
    admin_rows = token_admin.with_status(Token.objects.filter(pk__in=ids), now)
    assert dict(admin_rows.values_list("pk", token_admin.STATUS_FIELD)) == expected
    portal_rows = portal_selectors.user_tokens(user, now=now).filter(pk__in=ids)
    assert dict(portal_rows.values_list("pk", "state")) == expected
