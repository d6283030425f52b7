"""The fast paths of reminder emails give what Django gives: skeleton rendering and the direct MIME writer."""

import dataclasses
import datetime as dt
import email
import email.policy
import smtplib

import pytest
import time_machine
from django.core.mail.backends.smtp import EmailBackend

from notifications import emails, mailer

TRICKY = {
    "client_name": 'L\'Oréal & <Fils> "SA"',
    "token_label": "Jeton d'essai — très long pour plier les en-têtes encodés, vraiment très très long",
    "token_prefix": "tkm_<x>",
    "privileges": [("entreprises", "Entreprises & co"), ("etablissements", "Établissements")],
}


def data(route="api_gouv", threshold=30, **changes) -> emails.ReminderEmail:
    base = emails.sample(route, threshold)
    defaults = {"recipient": "c0@example.org", "personal_link": base.action_url + "?sesame=a&b0", **TRICKY}
    return dataclasses.replace(base, **{**defaults, **changes})


def full(d: emails.ReminderEmail) -> tuple[str, str, str]:
    """Django's own rendering, without skeletons."""
    from django.utils import translation

    with translation.override("fr"):
        subject, text, html = emails._render_full(d, emails.TEMPLATE_PREFIX)
    return " ".join(subject.split()), text.strip() + "\n", html


@pytest.mark.parametrize("route", emails.ROUTES)
@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"token_label": ""},
        {"privileges": []},
        {"admins_fallback": True, "personal_link": "", "other_recipients": 0},
        {"other_recipients": 0},
        {"other_recipients": 5},
        {"personal_link": ""},
        {"days_left": 1, "expires_on": dt.date(2028, 2, 29)},
        {
            "pending_state": "submitted",
            "pending_kind": "renewal",
            "pending_date": "3 mars 2026",
            "pending_url": "https://x.example/demandes/1/",
        },
        {
            "pending_state": "draft",
            "pending_kind": "new",
            "pending_date": "1 mars 2026",
            "pending_url": "https://x/d/",
        },
        {
            "prefill_date": "2 septembre 2024",
            "prefill_fields": ("l'organisation", "les privilèges"),
            "prefill_missing": ("la volumétrie attendue",),
        },
        {"prefill_fields": ("l'organisation",), "prefill_missing": ("le cadre juridique",)},
    ],
)
def test_skeleton_rendering_equals_full_rendering(route, changes):
    emails._skeletons.clear()
    first = data(route, **changes)
    assert emails.render_parts(first) == full(first)  # a miss: rendered in full, skeleton checked
    # Same shape, other strings: filled from the skeleton.
    other = dataclasses.replace(
        first,
        client_name="Mairie de Saint-Étienne <b>",
        token_label=first.token_label and "Autre & jeton",
        token_prefix="tkm_other",
        token_public_id="11111111-1111-4111-8111-111111111111",
        privileges=[(c + "_x", "L'" + label) for c, label in first.privileges],
        recipient="o'neil+x@example.org",
        personal_link=first.personal_link and first.action_url + "?sesame=other&x<y>",
        pending_date=first.pending_date and "30 avril 2026",
        pending_url=first.pending_url and "https://x.example/demandes/2/?a=1&b=<2>",
        prefill_date=first.prefill_date and "1 janvier 2025",
    )
    assert emails._skeletons[emails._shape(other, emails.TEMPLATE_PREFIX)] is not None
    assert emails.render_parts(other) == full(other)


def test_text_parts_are_not_html_escaped_but_html_is():
    subject, text, html = emails.render_parts(data())
    assert 'L\'Oréal & <Fils> "SA"' in text
    assert "Jeton d'essai" in subject and "&#x27;" not in subject
    assert "L&#x27;Oréal &amp; &lt;Fils&gt; &quot;SA&quot;" in html
    assert "?sesame=a&amp;b0" in html and "?sesame=a&b0" in text


def test_a_template_that_transforms_a_value_is_rendered_in_full(settings):
    loader = {
        "emails/t_api_gouv_subject.txt": "{{ r.client_name|upper }}",
        "emails/t_api_gouv_body.txt": "{{ r.client_name|truncatechars:8 }} {{ r.action_url }}",
        "emails/t_api_gouv_body.html": "{{ r.client_name }}",
    }
    settings.TEMPLATES = [
        {
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "OPTIONS": {"loaders": [("django.template.loaders.locmem.Loader", loader)]},
        }
    ]
    short = data(client_name="Abc")
    assert emails.render_parts(short, "emails/t") == ("ABC", f"Abc {short.action_url}\n", "Abc")
    assert emails._skeletons[emails._shape(short, "emails/t")] is None
    long = data(client_name="Commune de Trifouilly")
    assert emails.render_parts(long, "emails/t") == (
        "COMMUNE DE TRIFOUILLY",
        f"Commune… {long.action_url}\n",
        "Commune de Trifouilly",
    )


def parsed(raw: bytes):
    message = email.message_from_bytes(raw, policy=email.policy.default)
    headers = [(k, str(v).strip()) for k, v in message.items() if k != "Content-Type"]
    parts = [
        (p.get_content_type(), p["Content-Transfer-Encoding"], p.get_content()) for p in message.iter_parts()
    ]
    return message.get_content_type(), headers, parts


def test_action_url_is_the_reversed_url(settings):
    from django.urls import reverse

    public_id = "5b1f0e8a-3c1d-4e55-9a0b-0123456789ab"
    for route, name in emails.ROUTE_URL_NAMES.items():
        expected = settings.SITE_URL + reverse(name, kwargs={"public_id": public_id})
        assert emails.action_url(route, public_id) == expected


class RecordingSMTP:
    def __init__(self):
        self.sent = []

    def sendmail(self, from_addr, to_addrs, msg):
        self.sent.append((from_addr, to_addrs, msg))
        return {}


@time_machine.travel(dt.datetime(2026, 3, 11, 7, 0, 59, 900000, tzinfo=dt.UTC), tick=False)
def test_smtp_backend_sends_on_the_open_connection():
    # Clock pinned: both renderings stamp a Date header, which must not cross a second boundary between them.
    backend = EmailBackend(host="127.0.0.1", port=1)
    backend.connection = RecordingSMTP()
    message = emails.build_message(data())
    mailer.send(backend, message)
    ((sender, rcpt, raw),) = backend.connection.sent
    assert sender == "tokenmgr <noreply@tokenmgr.localhost>"  # as Django's backend passes it
    assert rcpt == ["c0@example.org"]
    assert parsed(raw)[1:] == parsed(message.message().as_bytes(linesep="\r\n"))[1:]


def test_smtp_refusal_is_an_error():
    class Refusing(RecordingSMTP):
        def sendmail(self, from_addr, to_addrs, msg):
            raise smtplib.SMTPRecipientsRefused(dict.fromkeys(to_addrs, (550, b"no")))

    backend = EmailBackend(host="127.0.0.1", port=1)
    backend.connection = Refusing()
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        mailer.send(backend, emails.build_message(data()))


@pytest.mark.parametrize("route", emails.ROUTES)
def test_an_email_names_its_addressee_only(route):
    subject, text, html = emails.render_parts(data(route, other_recipients=2))
    for part in (text, html):
        assert "c0@example.org" in part and "sesame=a" in part
        assert part.count("sesame=") == 1
        assert "2 autres contacts de ce jeton ont reçu ce rappel" in part
    message = emails.build_message(data(route))
    assert message.to == ["c0@example.org"] and message.cc == [] and message.bcc == []
    fallback = emails.render_parts(data(route, admins_fallback=True, personal_link="", other_recipients=0))
    assert all("sesame=" not in part and "autre contact" not in part for part in fallback)
