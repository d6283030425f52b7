import datetime as dt

import pytest
import time_machine

from tests.factories import ContactFactory, issue_token
from tokens import validity
from tokens.models import Token

# A Wednesday, far from DST changes; 08:00 in Paris.
TODAY = dt.date(2026, 3, 11)


def at(day: dt.date, hour: int = 8) -> dt.datetime:
    return validity.start_of_day(day) + dt.timedelta(hours=hour)


@pytest.fixture
def today():
    with time_machine.travel(at(TODAY), tick=False):
        yield TODAY


@pytest.fixture(autouse=True)
def _mail_settings(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.SITE_URL = "https://jetons.example.gouv.fr"
    settings.ADMINS = [("Admin", "admin@example.gouv.fr")]
    settings.REMINDER_DAYS = [90, 60, 30, 15]


def make_token(*, today: dt.date, days_left: int, origin: str = "api_gouv", contacts=1, **kwargs):
    """A token issued through the service, its expiry moved to `today + days_left` (10:30 local)."""
    issued = issue_token(origin=origin, contacts=contacts, **kwargs)
    expires_at = validity.start_of_day(today + dt.timedelta(days=days_left)) + dt.timedelta(
        hours=10, minutes=30
    )
    Token.objects.filter(pk=issued.token.pk).update(expires_at=expires_at)
    issued.token.refresh_from_db()
    return issued


@pytest.fixture
def token_factory(db, today):
    def factory(days_left: int, **kwargs):
        return make_token(today=today, days_left=days_left, **kwargs)

    return factory


__all__ = ["ContactFactory", "TODAY", "at", "make_token"]
