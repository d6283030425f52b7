"""Publication queues one digest per person (normalized address) and day; delivery sends each once, through the
outbox (lease, backoff), listing the person's tokens that the day's entries affect."""

import datetime as dt
import smtplib
import zoneinfo

import pytest
import time_machine
from django.core import mail
from django.core.exceptions import ValidationError
from django.core.mail.backends.base import BaseEmailBackend
from django.db import IntegrityError, transaction

from evolutions import services
from evolutions.models import Evolution, EvolutionNotice, EvolutionRevision, EvolutionStatus, NoticeStatus
from tests.factories import ClientFactory, ContactFactory, issue_token
from tokens.services import token_revoke

from .conftest import endpoint_of

PARIS = zoneinfo.ZoneInfo("Europe/Paris")
MORNING = dt.datetime(2026, 12, 7, 9, 0, tzinfo=PARIS)  # before the digest hour (18:00)
EVENING = dt.datetime(2026, 12, 7, 18, 30, tzinfo=PARIS)  # the digest of the 7th is due

pytestmark = pytest.mark.django_db


class RefusingBackend(BaseEmailBackend):
    def open(self):
        raise ConnectionRefusedError(111, "Connection refused")

    def send_messages(self, messages):
        raise smtplib.SMTPServerDisconnected("down")


@pytest.fixture(autouse=True)
def _digest_hour(settings):
    settings.EVOLUTION_DIGEST_HOUR = 18
    settings.TIME_ZONE = "Europe/Paris"


@pytest.fixture
def people():
    """alice holds two affected tokens (two clients, her address written differently); bob one; carol a token
    without the affected privilege; dave a revoked one."""
    lyon, paris = ClientFactory(name="Lyon"), ClientFactory(name="Paris")
    with time_machine.travel(MORNING - dt.timedelta(days=30), tick=False):
        alice_lyon = ContactFactory(client=lyon, email="Alice@Example.org")
        alice_paris = ContactFactory(client=paris, email="alice@example.ORG")
        bob = ContactFactory(client=lyon, email="bob@example.org")
        t1 = issue_token(
            client=lyon, privileges=("entreprises",), contacts=[alice_lyon, bob], label="Lyon A"
        ).token
        t2 = issue_token(
            client=paris, privileges=("entreprises", "associations"), contacts=[alice_paris]
        ).token
        issue_token(
            client=lyon,
            privileges=("associations",),
            contacts=[ContactFactory(client=lyon, email="carol@example.org")],
        )
        revoked = issue_token(
            client=paris,
            privileges=("entreprises",),
            contacts=[ContactFactory(client=paris, email="dave@example.org")],
        ).token
        token_revoke(token=revoked, by=None, reason="test")
    return {"alice_tokens": {t1.public_id, t2.public_id}}


def publish_at(moment, evolution):
    with time_machine.travel(moment, tick=False):
        return services.evolution_publish(evolution=evolution)


def deliver_at(moment):
    with time_machine.travel(moment, tick=False):
        return services.evolution_notices_deliver()


def test_publishing_queues_one_notice_per_person_holding_an_affected_active_token(people, make_evolution):
    evolution = make_evolution(endpoints=[endpoint_of("entreprises")])
    result = publish_at(MORNING, evolution)
    assert result.notices == 2
    notices = EvolutionNotice.objects.order_by("email")
    assert [(n.email, n.digest_on) for n in notices] == [
        ("alice@example.org", dt.date(2026, 12, 7)),
        ("bob@example.org", dt.date(2026, 12, 7)),
    ]
    assert all(n.next_attempt_at == dt.datetime(2026, 12, 7, 18, 0, tzinfo=PARIS) for n in notices)
    evolution.refresh_from_db()
    assert evolution.status == EvolutionStatus.PUBLISHED and evolution.revision == 1
    assert EvolutionRevision.objects.filter(evolution=evolution, number=1).exists()


def test_digest_waits_for_its_hour_then_one_message_per_person_listing_their_tokens(people, make_evolution):
    first = make_evolution(endpoints=[endpoint_of("entreprises")], title="Retrait de v2")
    second = make_evolution(
        endpoints=[endpoint_of("entreprises")], title="Nouveau paramètre", kind="parameters"
    )
    publish_at(MORNING, first)
    publish_at(MORNING + dt.timedelta(hours=3), second)
    assert EvolutionNotice.objects.count() == 2  # a digest, not a storm
    assert deliver_at(MORNING + dt.timedelta(hours=4)).sent == 0  # not before the digest hour
    result = deliver_at(EVENING)
    assert result.sent == 2
    assert sorted(m.to for m in mail.outbox) == [["alice@example.org"], ["bob@example.org"]]
    alice = next(m for m in mail.outbox if m.to == ["alice@example.org"])
    text = alice.body + alice.alternatives[0][0]
    assert alice.subject == "2 évolutions de l'API concernent vos jetons"
    assert "Retrait de v2" in text and "Nouveau paramètre" in text
    assert "Lyon A" in text and "Paris" in text  # both of her tokens, in one message
    assert "bob@example.org" not in text and "L'équipe API Entreprise" in alice.body
    assert alice.extra_headers["X-Evolution-Ids"] == f"{first.public_id},{second.public_id}"
    notice = EvolutionNotice.objects.get(email="alice@example.org")
    assert notice.status == NoticeStatus.SENT and set(notice.tokens) == {
        str(p) for p in people["alice_tokens"]
    }
    assert notice.message_id == alice.extra_headers["Message-ID"]
    # Delivered again (a second beat, a redelivered task): nothing more.
    assert deliver_at(EVENING + dt.timedelta(minutes=5)).sent == 0 and len(mail.outbox) == 2


def test_entry_published_after_the_digest_went_out_goes_to_the_next_day(people, make_evolution):
    publish_at(MORNING, make_evolution(endpoints=[endpoint_of("entreprises")]))
    deliver_at(EVENING)
    late = make_evolution(endpoints=[endpoint_of("entreprises")], title="Plus tard")
    publish_at(EVENING + dt.timedelta(minutes=10), late)  # after the hour: tomorrow's digest
    assert set(EvolutionNotice.objects.filter(status="pending").values_list("digest_on", flat=True)) == {
        dt.date(2026, 12, 8)
    }


def test_entry_attached_to_a_notice_already_claimed_moves_to_the_next_day(people, make_evolution, settings):
    publish_at(MORNING, make_evolution(endpoints=[endpoint_of("entreprises")]))
    EvolutionNotice.objects.filter(email="bob@example.org").update(status=NoticeStatus.SENT)
    result = publish_at(
        MORNING + dt.timedelta(hours=1), make_evolution(endpoints=[endpoint_of("entreprises")])
    )
    assert result.notices == 2
    assert list(
        EvolutionNotice.objects.filter(email="bob@example.org")
        .order_by("digest_on")
        .values_list("digest_on", "status")
    ) == [(dt.date(2026, 12, 7), "sent"), (dt.date(2026, 12, 8), "pending")]


def test_unique_per_person_and_day(people, make_evolution):
    publish_at(MORNING, make_evolution(endpoints=[endpoint_of("entreprises")]))
    with pytest.raises(IntegrityError), transaction.atomic():
        EvolutionNotice.objects.create(email="bob@example.org", digest_on=dt.date(2026, 12, 7))


def test_publishing_twice_is_refused_and_queues_nothing_more(people, make_evolution):
    evolution = make_evolution(endpoints=[endpoint_of("entreprises")])
    publish_at(MORNING, evolution)
    with pytest.raises(services.EvolutionError):
        publish_at(MORNING, evolution)
    assert EvolutionNotice.objects.count() == 2


def test_entry_without_endpoints_tells_no_one(people, make_evolution):
    assert publish_at(MORNING, make_evolution(kind="new_api", title="Nouvelle API")).notices == 0


def test_notice_cancelled_when_no_affected_token_is_left(people, make_evolution):
    publish_at(MORNING, make_evolution(endpoints=[endpoint_of("entreprises")]))
    from tokens.models import Token

    for token in Token.objects.filter(contacts__email="bob@example.org"):
        token_revoke(token=token, by=None, reason="test")
    result = deliver_at(EVENING)
    assert result.skipped == 1 and [m.to for m in mail.outbox] == [["alice@example.org"]]


def test_smtp_down_retries_with_backoff_then_sends_once(people, make_evolution, settings):
    publish_at(MORNING, make_evolution(endpoints=[endpoint_of("entreprises")]))
    settings.EMAIL_BACKEND = "tests.evolutions.test_publish_and_deliver.RefusingBackend"
    result = deliver_at(EVENING)
    assert result.failed == 2 and result.sent == 0
    notice = EvolutionNotice.objects.get(email="bob@example.org")
    assert notice.status == NoticeStatus.PENDING and notice.attempts == 1 and "refused" in notice.last_error
    assert notice.next_attempt_at == EVENING + dt.timedelta(seconds=settings.REMINDER_RETRY_BASE_SECONDS)
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert deliver_at(EVENING + dt.timedelta(seconds=10)).sent == 0  # backoff not elapsed
    assert deliver_at(EVENING + dt.timedelta(minutes=2)).sent == 2


def test_gives_up_after_max_attempts(people, make_evolution, settings):
    publish_at(MORNING, make_evolution(endpoints=[endpoint_of("entreprises")]))
    settings.EMAIL_BACKEND = "tests.evolutions.test_publish_and_deliver.RefusingBackend"
    settings.REMINDER_MAX_ATTEMPTS = 2
    deliver_at(EVENING)
    deliver_at(EVENING + dt.timedelta(hours=1))
    assert set(EvolutionNotice.objects.values_list("status", flat=True)) == {NoticeStatus.FAILED}
    assert (
        services.evolution_notices_requeue(notice_ids=EvolutionNotice.objects.values_list("pk", flat=True))
        == 2
    )


def test_a_dead_workers_claim_is_taken_over_after_its_lease(people, make_evolution, settings):
    publish_at(MORNING, make_evolution(endpoints=[endpoint_of("entreprises")]))
    ids = services.OUTBOX.claim(worker="dead", limit=10, now=EVENING)
    assert len(ids) == 2
    assert deliver_at(EVENING + dt.timedelta(seconds=10)).sent == 0  # leased to the dead worker
    lease = dt.timedelta(seconds=settings.REMINDER_LEASE_SECONDS + 1)
    assert deliver_at(EVENING + lease).sent == 2
    assert services.OUTBOX.settle(ids[0], worker="dead", status=NoticeStatus.FAILED) is False


def test_correction_is_a_new_revision_with_its_note(people, make_evolution):
    evolution = make_evolution(endpoints=[endpoint_of("entreprises")])
    publish_at(MORNING, evolution)
    with pytest.raises(services.EvolutionError):
        services.evolution_correct(evolution=evolution, note="", title="Autre titre")
    corrected = services.evolution_correct(evolution=evolution, note="Coquille", title="Autre titre")
    assert corrected.revision == 2 and corrected.corrected_at is not None
    assert list(evolution.revisions.values_list("number", "title", "note")) == [
        (1, "Retrait de l'endpoint v2", ""),
        (2, "Autre titre", "Coquille"),
    ]
    # Nothing changed: no revision.
    assert services.evolution_correct(evolution=evolution, note="rien", title="Autre titre").revision == 2
    with pytest.raises(services.EvolutionError):
        services.evolution_correct(evolution=make_evolution(), note="x", title="brouillon")


def test_sunset_needs_a_deprecation_not_after_it(make_evolution):
    at = dt.datetime(2027, 3, 1, tzinfo=dt.UTC)
    with pytest.raises(ValidationError):
        services.evolution_dates_check(deprecation_at=at, sunset_at=at - dt.timedelta(days=1))
    with pytest.raises(ValidationError):
        services.evolution_dates_check(deprecation_at=None, sunset_at=at)
    services.evolution_dates_check(deprecation_at=at, sunset_at=at)
    with pytest.raises(IntegrityError), transaction.atomic():
        make_evolution(deprecation_at=at, sunset_at=at - dt.timedelta(days=1))
    assert not Evolution.objects.exists()


def test_beat_runs_the_thin_delivery_task(people, make_evolution, settings):
    from evolutions.tasks import deliver_notices
    from tokenmgr.celery import app

    entry = app.conf.beat_schedule["evolutions: deliver notices"]
    assert entry["task"] == "evolutions.deliver_notices"
    assert entry["schedule"] == float(settings.EVOLUTION_DELIVERY_INTERVAL)
    publish_at(MORNING, make_evolution(endpoints=[endpoint_of("entreprises")]))
    with time_machine.travel(EVENING, tick=False):
        assert deliver_notices.apply().get() == 2
        assert deliver_notices.apply().get() == 0
