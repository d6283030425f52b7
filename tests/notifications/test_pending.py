"""Reminders while a request that would replace the token is open, the pre-fill statement, and the instructors'
one alert at the last threshold."""

import datetime as dt
import smtplib

import pytest
import time_machine
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend
from django.urls import reverse

from notifications import delivery, pending, sweep
from notifications.models import DeadlineAlert, DeadlineAlertMessage
from notifications.tasks import sweep_reminders
from tests.factories import UserFactory
from tokens import validity
from tokens.models import AccessRequest
from tokens.prefill import renewal_prefill_source

from .conftest import at

SITE = "https://jetons.example.gouv.fr"


def text_of(message) -> str:
    return message.body + "".join(content for content, _ in message.alternatives)


def make_request(token, *, state, kind=AccessRequest.Kind.RENEWAL, on: dt.date, **fields) -> AccessRequest:
    moment = at(on, 11)
    return AccessRequest.objects.create(
        client=token.client,
        kind=kind,
        applicant=UserFactory(),
        token=token,
        state=state,
        created_at=moment,
        submitted_at=None if state == AccessRequest.State.DRAFT else moment,
        **fields,
    )


def deliver(today) -> list:
    sweep.reminders_sweep(today=today)
    delivery.reminders_deliver()
    return list(mail.outbox)


# -- the reminder says the request is pending ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("state", "words"),
    [
        (AccessRequest.State.SUBMITTED, "est en cours d'instruction"),
        (AccessRequest.State.CHANGES_REQUESTED, "vous a été renvoyée pour modifications"),
        (AccessRequest.State.DRAFT, "est encore un brouillon"),
    ],
)
def test_renewal_reminder_names_the_pending_request(token_factory, today, state, words):
    issued = token_factory(15)
    request = make_request(issued.token, state=state, on=today - dt.timedelta(days=5))
    (message,) = deliver(today)
    url = SITE + reverse("request_detail", args=[request.public_id])
    body, html = message.body, message.alternatives[0][0]
    assert "Votre demande de renouvellement du 6 mars 2026" in body and words in body
    assert url in body and url in html
    assert "si aucune décision n'est prise d'ici le 26 mars 2026, ce jeton cessera de fonctionner" in body
    assert "Demandez son renouvellement dès maintenant" not in text_of(message)
    assert "Voir ma demande en cours" in html and "Renouveler ce jeton" not in html


def test_legacy_reminder_names_the_new_request_instead_of_asking_for_one(token_factory, today):
    issued = token_factory(30, origin="demarches_simplifiees")
    make_request(
        issued.token, state=AccessRequest.State.SUBMITTED, kind=AccessRequest.Kind.NEW, on=dt.date(2026, 2, 1)
    )
    (message,) = deliver(today)
    text = text_of(message)
    assert "Votre demande d'accès du 1 février 2026 est en cours d'instruction" in message.body
    assert "Créez votre compte" not in text and "Créer mon compte et faire une nouvelle demande" not in text
    assert "À l'échéance" in text


def test_what_the_email_says_is_decided_when_it_is_sent(token_factory, today):
    """The request submitted after the sweep queued the reminder, and before delivery, is named."""
    issued = token_factory(30)
    sweep.reminders_sweep(today=today)
    make_request(issued.token, state=AccessRequest.State.SUBMITTED, on=today)
    delivery.reminders_deliver()
    (message,) = mail.outbox
    assert "Votre demande de renouvellement du 11 mars 2026 est en cours d'instruction" in message.body


def test_a_decided_request_is_not_pending(token_factory, today):
    issued = token_factory(30)
    make_request(issued.token, state=AccessRequest.State.REFUSED, on=dt.date(2026, 2, 1))
    (message,) = deliver(today)
    assert "Demandez son renouvellement dès maintenant" in message.body
    assert "Votre demande" not in message.body


def test_pending_and_plain_reminders_in_one_batch_each_say_their_own(token_factory, today):
    """Skeleton rendering: the shape of the email follows the pending request, never the previous email's."""
    plain = [token_factory(30) for _ in range(2)]
    waiting = token_factory(30)
    request = make_request(waiting.token, state=AccessRequest.State.SUBMITTED, on=dt.date(2026, 3, 2))
    messages = {m.extra_headers["X-Token-Id"]: m for m in deliver(today)}
    assert len(messages) == 3
    for issued in plain:
        assert "Demandez son renouvellement" in messages[str(issued.token.public_id)].body
    assert str(request.public_id) in messages[str(waiting.token.public_id)].body


# -- the pre-fill statement ------------------------------------------------------------------------------------------
def test_prefill_from_the_original_request_names_it_and_its_date(token_factory, today):
    issued = token_factory(30)
    AccessRequest.objects.create(
        client=issued.token.client,
        applicant=UserFactory(),
        issued_token=issued.token,
        state=AccessRequest.State.VALIDATED,
        created_at=at(dt.date(2024, 9, 2)),
        submitted_at=at(dt.date(2024, 9, 3)),
        project_description="Aides sociales",
        legal_basis_text="Article L. 114-8",
        expected_volume=10,
    )
    source = renewal_prefill_source(token=issued.token)
    assert source.date == dt.date(2024, 9, 3) and source.request is not None
    assert {"project_description", "legal_basis_text", "expected_volume"} <= set(source.fields)
    (message,) = deliver(today)
    assert "pré-rempli à partir de votre demande d'origine du 3 septembre 2024" in message.body
    assert "la description du projet" in message.body
    assert "n'est rattaché à aucune demande" not in message.body


def test_prefill_without_an_earlier_request_says_what_must_be_filled(token_factory, today):
    issued = token_factory(30)
    source = renewal_prefill_source(token=issued.token)
    assert source.request is None and not source.from_request
    assert {"label", "privileges"} <= set(source.fields)
    assert source.missing == [
        "project_description",
        "expected_volume",
        "legal_basis_nature",
        "legal_basis_text",
    ]
    (message,) = deliver(today)
    body = " ".join(message.body.split())
    assert "demande d'origine" not in body
    assert "Ce jeton n'est rattaché à aucune demande d'accès validée" in body
    assert "la description du projet, la volumétrie attendue, le cadre juridique sont à renseigner" in body


# -- one alert to the instructors at the last threshold --------------------------------------------------------------
@pytest.fixture
def instructor(db):
    return UserFactory(email="instructeur@example.gouv.fr", is_staff=True, is_superuser=True)


def alerts_sent() -> list:
    return [m for m in mail.outbox if m.to == ["instructeur@example.gouv.fr"]]


def test_last_threshold_with_undecided_request_alerts_the_instructors_once(token_factory, today, instructor):
    issued = token_factory(15)
    request = make_request(issued.token, state=AccessRequest.State.SUBMITTED, on=dt.date(2026, 3, 1))
    far = token_factory(17)  # not at the last threshold, today nor tomorrow
    make_request(far.token, state=AccessRequest.State.SUBMITTED, on=dt.date(2026, 3, 1))
    sweep_reminders.run(today.isoformat())
    sweep_reminders.run(today.isoformat())  # a second beat, a retried task
    assert pending.deadline_alerts_run(today=today) == 0
    with time_machine.travel(at(today + dt.timedelta(days=1)), tick=False):
        sweep_reminders.run()  # the next day: still one alert for this token and expiry
    (alert,) = alerts_sent()
    assert "Échéance proche" in alert.subject and issued.token.client.name in alert.subject
    assert f"/admin/tokens/accessrequest/{request.pk}/change/" in alert.body
    assert "expire le 26 mars 2026" in alert.body
    assert DeadlineAlert.objects.get().sent_at is not None


def test_one_alert_per_token_names_its_latest_request_and_counts_only_new_alerts(
    token_factory, today, instructor
):
    first = token_factory(15).token
    make_request(first, state=AccessRequest.State.SUBMITTED, on=today - dt.timedelta(days=3))
    assert pending.deadline_alerts_queue(today=today) == 1
    second = token_factory(15).token
    make_request(second, state=AccessRequest.State.SUBMITTED, on=today - dt.timedelta(days=2))
    latest = make_request(
        second, state=AccessRequest.State.CHANGES_REQUESTED, on=today - dt.timedelta(days=1)
    )
    assert (
        pending.deadline_alerts_queue(today=today) == 1
    )  # the second token's; the first one's is queued already
    assert DeadlineAlert.objects.get(token=second).access_request == latest
    assert DeadlineAlert.objects.count() == 2


def test_no_alert_for_a_draft_nor_a_decided_request(token_factory, today, instructor):
    make_request(token_factory(10).token, state=AccessRequest.State.DRAFT, on=today)
    make_request(token_factory(10).token, state=AccessRequest.State.REFUSED, on=today)
    assert pending.deadline_alerts_run(today=today) == 0
    assert not alerts_sent() and not DeadlineAlert.objects.exists()


class RefusingBackend(BaseEmailBackend):
    """An SMTP server that refuses the addresses in `refused` (every address when it holds "*")."""

    refused = {"*"}

    def send_messages(self, messages):
        for message in messages:
            if "*" in self.refused:
                raise OSError("smtp down")
            if set(message.to) & self.refused:
                raise smtplib.SMTPRecipientsRefused({message.to[0]: (550, b"mailbox unavailable")})
        mail.outbox.extend(messages)
        return len(messages)


def after_backoff(today: dt.date):
    return time_machine.travel(at(today) + dt.timedelta(days=1), tick=False)


def test_a_failed_alert_is_sent_at_the_next_run(token_factory, today, instructor, settings):
    make_request(token_factory(15).token, state=AccessRequest.State.CHANGES_REQUESTED, on=today)

    settings.EMAIL_BACKEND = f"{__name__}.RefusingBackend"
    assert pending.deadline_alerts_run(today=today) == 0
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert DeadlineAlert.objects.get().last_error == "OSError: smtp down"
    with after_backoff(today):  # retried with the outbox's backoff
        assert pending.deadline_alerts_run(today=today) == 1
        assert pending.deadline_alerts_run(today=today) == 0
    assert len(alerts_sent()) == 1


def test_a_retry_after_a_partial_failure_reaches_only_the_instructors_not_told_yet(
    token_factory, today, instructor, settings, monkeypatch
):
    UserFactory(email="seconde@example.gouv.fr", is_staff=True, is_superuser=True)
    make_request(token_factory(15).token, state=AccessRequest.State.SUBMITTED, on=today)
    assert pending.deadline_alerts_queue(today=today) == 1
    assert set(DeadlineAlertMessage.objects.values_list("email", flat=True)) == {
        "instructeur@example.gouv.fr",
        "seconde@example.gouv.fr",
    }
    assert pending.deadline_alerts_queue(today=today) == 0  # a second queue run creates nothing new
    assert DeadlineAlertMessage.objects.count() == 2
    pending.deadline_alerts_settle(list(DeadlineAlertMessage.objects.all()))  # nothing sent, no error yet
    assert DeadlineAlert.objects.filter(sent_at__isnull=True, last_error="").count() == 1

    monkeypatch.setattr(RefusingBackend, "refused", {"seconde@example.gouv.fr"})
    settings.EMAIL_BACKEND = f"{__name__}.RefusingBackend"
    assert pending.deadline_alerts_send() == 1
    assert [m.to for m in mail.outbox] == [["instructeur@example.gouv.fr"]]
    alert = DeadlineAlert.objects.get()
    assert alert.sent_at is None and "mailbox unavailable" in alert.last_error
    states = dict(DeadlineAlertMessage.objects.values_list("email", "status"))
    assert states == {"instructeur@example.gouv.fr": "sent", "seconde@example.gouv.fr": "pending"}

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    with after_backoff(today):
        assert pending.deadline_alerts_run(today=today) == 1  # only the one not reached
        assert pending.deadline_alerts_run(today=today) == 0
    assert sorted(m.to[0] for m in mail.outbox) == ["instructeur@example.gouv.fr", "seconde@example.gouv.fr"]
    assert DeadlineAlertMessage.objects.count() == 2
    alert.refresh_from_db()
    assert alert.sent_at is not None and alert.last_error == ""
    assert len({m.extra_headers["Message-ID"] for m in mail.outbox}) == 2


def test_the_request_queue_filters_requests_near_their_deadline(client, token_factory, today, instructor):
    near = make_request(token_factory(12).token, state=AccessRequest.State.SUBMITTED, on=today)
    later = make_request(token_factory(40).token, state=AccessRequest.State.SUBMITTED, on=today)
    client.force_login(instructor)
    url = reverse("admin:tokens_accessrequest_changelist")
    page = client.get(url).content.decode()
    assert "échéance proche" in page.lower()
    filtered = client.get(url, {"echeance": "proche"}).content.decode()
    change = reverse("admin:tokens_accessrequest_change", args=[near.pk])
    assert change in filtered
    assert reverse("admin:tokens_accessrequest_change", args=[later.pk]) not in filtered
    assert validity.local_date(near.token.expires_at) == today + dt.timedelta(days=12)


def test_the_admin_shows_each_instructor_message_of_an_alert(client, token_factory, today, instructor):
    make_request(token_factory(15).token, state=AccessRequest.State.SUBMITTED, on=today)
    assert pending.deadline_alerts_run(today=today) == 1
    alert = DeadlineAlert.objects.get()
    client.force_login(instructor)
    page = client.get(reverse("admin:notifications_deadlinealert_change", args=[alert.pk]))
    assert page.status_code == 200
    assert "instructeur@example.gouv.fr" in page.content.decode() and "envoyé" in page.content.decode()
    for name in (
        "notifications_deadlinealert",
        "notifications_remindermessage",
        "evolutions_evolutionnotice",
    ):
        assert client.get(reverse(f"admin:{name}_changelist")).status_code == 200
