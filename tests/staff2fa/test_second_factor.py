"""Staff second factor on /admin/ (STAFF_2FA=required): enrolment, TOTP, recovery codes, audited reset."""

import datetime as dt
import logging
import re

import pytest
import time_machine
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_login_failed
from django.test import Client
from django.urls import reverse
from django_otp.oath import TOTP
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"
START = dt.datetime(2026, 3, 10, 10, 0, tzinfo=dt.UTC)
LOGIN = reverse("admin:login")
INDEX = reverse("admin:index")
ENROL = reverse("admin:staff2fa_enrol")
VERIFY = reverse("admin:staff2fa_verify")
CODES = reverse("admin:staff2fa_codes")
USER_META = get_user_model()._meta
USERS = reverse(f"admin:{USER_META.app_label}_{USER_META.model_name}_changelist")
ADMIN_PAGES = [
    INDEX,
    reverse("admin:tokens_token_changelist"),
    reverse("admin:tokens_accessrequest_changelist"),
    USERS,
    reverse("admin:password_change"),
]


@pytest.fixture(autouse=True)
def _required(settings):
    settings.STAFF_2FA = "required"


@pytest.fixture
def clock():
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


@pytest.fixture
def staff(db):
    return UserFactory(email="instructrice@api.gouv.fr", is_staff=True, is_superuser=True)


def password_login(user, next_url=INDEX) -> tuple[Client, object]:
    client = Client()
    response = client.post(LOGIN, {"username": user.email, "password": PASSWORD, "next": next_url})
    return client, response


def totp_now(device: TOTPDevice) -> str:
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    return f"{totp.token():0{device.digits}d}"


def enrol(user, clock) -> tuple[Client, list[str]]:
    """Password, enrolment with a correct code; returns the verified client and its recovery codes."""
    client, _ = password_login(user)
    client.get(ENROL)
    device = TOTPDevice.objects.get(user=user)
    response = client.post(ENROL, {"code": totp_now(device), "next": INDEX})
    assert response.status_code == 302 and response.url.startswith(CODES)
    page = client.get(response.url).content.decode()
    codes = re.findall(r"<li><code>([a-z0-9]+)</code></li>", page)
    clock.shift(dt.timedelta(seconds=60))  # next TOTP window: a code is never accepted twice
    return client, codes


def test_password_alone_leads_to_enrolment_and_no_admin_page(staff, clock):
    client, response = password_login(staff, next_url=reverse("admin:tokens_token_changelist"))
    assert response.status_code == 302
    assert response.url.startswith(ENROL)
    assert "next=%2Fadmin%2Ftokens%2Ftoken%2F" in response.url
    for url in ADMIN_PAGES:
        response = client.get(url, follow=True)
        assert response.redirect_chain, url
        assert response.redirect_chain[-1][0].startswith(ENROL), url
        assert response.templates[0].name == "admin/staff2fa/enrol.html"
    # Nothing to see on the recovery codes page before enrolment either.
    assert client.get(CODES, follow=True).redirect_chain[-1][0].startswith(ENROL)
    assert client.post(reverse("admin:logout")).status_code == 302  # admin logout itself is an admin page
    assert not TOTPDevice.objects.filter(user=staff, confirmed=True).exists()


def test_steps_need_a_password_session_and_can_be_left(staff, clock):
    anonymous = Client()
    for url in (ENROL, VERIFY, CODES):
        response = anonymous.get(url)
        assert response.status_code == 302 and response.url == LOGIN, url
    client, _ = password_login(staff)
    response = client.post(reverse("admin:staff2fa_logout"))
    assert response.status_code == 200
    assert "_auth_user_id" not in client.session
    assert client.get(ENROL).url == LOGIN
    assert not TOTPDevice.objects.filter(user=staff).exists()


def test_enrolment_page_shows_qr_code_and_secret(staff, clock):
    client, _ = password_login(staff)
    page = client.get(ENROL)
    assert page.status_code == 200
    assert "no-cache" in page["Cache-Control"] or "max-age=0" in page["Cache-Control"]
    device = TOTPDevice.objects.get(user=staff, confirmed=False)
    html = page.content.decode()
    secret = re.search(r'data-secret="([A-Z2-7]+)"', html).group(1)
    from base64 import b32decode

    assert b32decode(secret) == device.bin_key
    assert "<svg" in html and "<img" not in html  # generated server side, inline
    # Reloading keeps the same pending secret (the app already scanned it stays valid).
    client.get(ENROL)
    assert TOTPDevice.objects.filter(user=staff).count() == 1


def test_wrong_code_refused_then_right_code_enrols(staff, clock):
    client, _ = password_login(staff)
    client.get(ENROL)
    device = TOTPDevice.objects.get(user=staff)
    good = totp_now(device)
    wrong = f"{(int(good) + 1) % 10**6:06d}"
    response = client.post(ENROL, {"code": wrong, "next": INDEX})
    assert response.status_code == 200
    assert "Code refusé" in response.content.decode()
    assert client.get(INDEX).status_code == 302
    device.refresh_from_db()
    assert not device.confirmed

    clock.shift(dt.timedelta(seconds=5))  # past the throttling delay of one failure
    response = client.post(ENROL, {"code": totp_now(device), "next": INDEX})
    assert response.status_code == 302 and response.url.startswith(CODES)
    page = client.get(response.url)
    codes = re.findall(r"<li><code>([a-z0-9]+)</code></li>", page.content.decode())
    assert len(codes) == 10 and len(set(codes)) == 10
    assert sorted(codes) == sorted(
        StaticToken.objects.filter(device__user=staff).values_list("token", flat=True)
    )
    # Shown once.
    again = client.get(CODES)
    assert again.status_code == 302 and "<code>" not in again.content.decode()
    assert client.get(INDEX).status_code == 200
    assert client.get(reverse("admin:tokens_token_changelist")).status_code == 200


def test_enrolled_member_logs_in_with_password_and_totp(staff, clock):
    enrol(staff, clock)
    client, response = password_login(staff)
    assert response.url.startswith(VERIFY)
    assert client.get(INDEX).status_code == 302
    device = TOTPDevice.objects.get(user=staff, confirmed=True)
    code = totp_now(device)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    response = client.post(VERIFY, {"code": wrong, "next": INDEX})
    assert response.status_code == 200 and "Code refusé" in response.content.decode()
    assert client.get(INDEX).status_code == 302
    clock.shift(dt.timedelta(seconds=5))
    response = client.post(VERIFY, {"code": totp_now(device), "next": INDEX})
    assert response.status_code == 302 and response.url == INDEX
    assert client.get(INDEX).status_code == 200
    # The enrolment page is not a way to replace an enrolled authenticator.
    assert client.get(ENROL).status_code == 302
    assert TOTPDevice.objects.filter(user=staff).count() == 1


def test_recovery_code_works_once(staff, clock):
    _, codes = enrol(staff, clock)
    code = codes[3]
    client, _ = password_login(staff)
    response = client.post(VERIFY, {"code": f" {code.upper()[:4]}-{code.upper()[4:]} ", "next": INDEX})
    assert response.status_code == 302 and response.url == INDEX
    assert client.get(INDEX).status_code == 200
    assert StaticToken.objects.filter(device__user=staff).count() == 9

    other, _ = password_login(staff)
    response = other.post(VERIFY, {"code": code, "next": INDEX})
    assert response.status_code == 200 and "Code refusé" in response.content.decode()
    assert other.get(INDEX).status_code == 302


def test_unsafe_next_is_ignored(staff, clock):
    client, _ = enrol(staff, clock)
    client2, response = password_login(staff, next_url="https://evil.example/")
    device = TOTPDevice.objects.get(user=staff, confirmed=True)
    response = client2.post(VERIFY, {"code": totp_now(device), "next": "https://evil.example/"})
    assert response.url == INDEX


def test_superuser_resets_a_member_who_enrols_again(staff, clock, caplog):
    member = UserFactory(email="agent@api.gouv.fr", is_staff=True)
    member_client, _ = enrol(member, clock)
    assert member_client.get(INDEX).status_code == 200
    admin_client, _ = enrol(staff, clock)

    with caplog.at_level(logging.WARNING, logger="staff2fa.services"):
        response = admin_client.post(
            USERS, {"action": "reset_second_factor", "_selected_action": [member.pk]}, follow=True
        )
    assert response.status_code == 200
    assert "Second facteur réinitialisé pour 1 compte" in response.content.decode()
    assert not TOTPDevice.objects.filter(user=member).exists()
    assert not StaticDevice.objects.filter(user=member).exists()
    assert TOTPDevice.objects.filter(user=staff, confirmed=True).exists()  # nobody else's
    entry = LogEntry.objects.get(object_id=str(member.pk), content_type__model=USER_META.model_name)
    assert entry.user == staff
    assert "Second facteur réinitialisé" in entry.change_message
    assert entry.action_time == START + dt.timedelta(seconds=120)
    line = next(r.getMessage() for r in caplog.records if "reset" in r.getMessage())
    assert "agent@api.gouv.fr" in line and "instructrice@api.gouv.fr" in line

    # The member's verified session no longer opens the admin: they enrol again.
    response = member_client.get(INDEX, follow=True)
    assert response.redirect_chain[-1][0].startswith(ENROL)
    member_client.get(ENROL)
    device = TOTPDevice.objects.get(user=member, confirmed=False)
    response = member_client.post(ENROL, {"code": totp_now(device), "next": INDEX})
    assert response.url.startswith(CODES)
    assert member_client.get(INDEX).status_code == 200


def test_only_a_superuser_can_reset(staff, clock):
    from django.contrib.auth.models import Permission

    member = UserFactory(email="agent@api.gouv.fr", is_staff=True)
    manager = UserFactory(email="manager@api.gouv.fr", is_staff=True)
    manager.user_permissions.add(
        *Permission.objects.filter(
            codename__in=[f"view_{USER_META.model_name}", f"change_{USER_META.model_name}"]
        )
    )
    enrol(member, clock)
    manager_client, _ = enrol(manager, clock)
    response = manager_client.post(
        USERS,
        {"action": "reset_second_factor", "_selected_action": [member.pk]},
        follow=True,
    )
    assert "Seul un super-utilisateur" in response.content.decode()
    assert TOTPDevice.objects.filter(user=member, confirmed=True).exists()
    assert not LogEntry.objects.exists()


def test_device_admins_are_not_exposed(staff, clock):
    client, _ = enrol(staff, clock)
    assert client.get("/admin/otp_totp/totpdevice/").status_code == 404
    assert client.get("/admin/otp_static/staticdevice/").status_code == 404


def test_off_skips_the_second_factor(staff, settings):
    settings.STAFF_2FA = "off"
    client, response = password_login(staff)
    assert response.url == INDEX
    assert client.get(INDEX).status_code == 200
    assert client.get(ENROL).status_code == 302


def test_portal_members_are_unaffected(db):
    member = UserFactory(email="claire@agglo.example.org")
    client = Client()
    assert client.post(reverse("login"), {"username": member.email, "password": PASSWORD}).status_code == 302
    assert client.get("/").status_code == 200


def test_password_step_is_djangos_authenticate_with_the_request(staff):
    """Login throttling (django-axes) hooks on authenticate(request=...) and its signals."""
    seen = []

    def receiver(sender, credentials, request=None, **kwargs):
        seen.append(request)

    user_login_failed.connect(receiver)
    try:
        Client().post(LOGIN, {"username": staff.email, "password": "wrong", "next": INDEX})
    finally:
        user_login_failed.disconnect(receiver)
    assert len(seen) == 1 and seen[0] is not None and seen[0].path == LOGIN
