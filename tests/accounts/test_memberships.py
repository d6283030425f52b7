"""Who may see a client: look-alike addresses never match, access needs a proved address, and it ends on the next
request once the person is no longer a contact (unless an admin granted it), or once an admin removes it."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.db import connection
from django.urls import reverse

from tests.factories import ClientFactory, ClientMembershipFactory, ContactFactory, UserFactory, issue_token
from tokens.models import Client, ClientMembership, ClientMembershipEvent, Contact, MembershipSource, Token
from tokens.services import client_membership_remove, memberships_sync_from_proof

PASSWORD = "correct horse battery staple"
VICTIM = "victim@prestataire.com"
LOOK_ALIKES = {
    "turkish-dotless-i": "victim@prestata\u0131re.com",
    "cyrillic-a": "victim@prest\u0430taire.com",
    "sharp-s": "victim@prestataire\u00df.com",
    "dotless-i-local-part": "vict\u0131m@prestataire.com",
}
FULLWIDTH = "victim@\uff50restataire.com"

pytestmark = pytest.mark.django_db


@pytest.fixture
def victim_token():
    """A client whose token lists victim@prestataire.com as a contact."""
    client = ClientFactory(name="Prestataire")
    contact = ContactFactory(client=client, email=VICTIM, role=Contact.Role.TECHNICAL)
    return issue_token(client=client, contacts=[contact]).token


def pickup(token) -> str:
    return reverse("token_pickup", args=[token.public_id])


def sign_up(client, email: str):
    """The whole sign-up: form, the link mailed to the address, the account form. Returns the final response."""
    mail.outbox.clear()
    response = client.post(reverse("signup"), {"email": email})
    assert response.status_code == 200, response.content.decode()
    (message,) = mail.outbox
    path = re.search(r"https?://[^/\s]+(/inscription/confirmer/\S+/)", message.body).group(1)
    return client.post(
        path, {"first_name": "Vic", "last_name": "Tim", "password1": PASSWORD, "password2": PASSWORD}
    )


# ---------------------------------------------------------------------------------------------------------------
# Look-alike addresses
# ---------------------------------------------------------------------------------------------------------------
def test_reproduction_dotless_i_sign_up_gets_no_membership(client, victim_token):
    look_alike = LOOK_ALIKES["turkish-dotless-i"]
    if connection.vendor == "postgresql":
        # The comparison that granted membership before: UPPER() folds the dotless i into I.
        assert Contact.objects.filter(email__iexact=look_alike).exists()
    response = sign_up(client, look_alike)
    assert response.status_code == 302
    user = get_user_model().objects.get(email__startswith="victim@xn--")
    assert user.email != VICTIM
    assert not ClientMembership.objects.filter(user=user).exists()
    assert not Client.objects.accessible_to(user).exists()
    assert client.get(pickup(victim_token)).status_code == 404


@pytest.mark.parametrize("look_alike", LOOK_ALIKES.values(), ids=LOOK_ALIKES.keys())
def test_look_alikes_never_match_a_contact(client, victim_token, look_alike):
    assert sign_up(client, look_alike).status_code == 302
    user = get_user_model().objects.exclude(email=VICTIM).get()
    memberships_sync_from_proof(user=user)  # even proving the look-alike address gives nothing
    assert not Token.objects.for_user(user).exists()
    assert client.get(pickup(victim_token)).status_code == 404
    assert client.get(reverse("portal_dashboard")).context["clients"] == []


@pytest.mark.parametrize("look_alike", [*LOOK_ALIKES.values(), FULLWIDTH])
def test_look_alikes_never_match_an_account(client, look_alike):
    UserFactory(email=VICTIM)
    response = client.post(reverse("login"), {"username": look_alike, "password": PASSWORD})
    assert response.status_code == 200 and not response.wsgi_request.user.is_authenticated
    mail.outbox.clear()
    client.post(reverse("login_link_request"), {"email": look_alike})
    client.post(reverse("password_reset"), {"email": look_alike})
    assert mail.outbox == []  # neither a login link nor a reset link for the victim's account


def test_ascii_case_is_the_same_account(client):
    UserFactory(email=VICTIM)
    response = client.post(reverse("login"), {"username": "  Victim@PRESTATAIRE.com", "password": PASSWORD})
    assert response.status_code == 302
    assert response.wsgi_request.user.email == VICTIM


def test_fullwidth_address_is_a_clear_form_error(client, victim_token):
    response = client.post(reverse("signup"), {"email": FULLWIDTH})
    assert response.status_code == 200 and mail.outbox == []
    assert response.context["form"].errors["email"] == ["Nom de domaine invalide dans l'adresse e-mail."]
    assert not get_user_model().objects.exists()


def test_existing_account_is_found_by_normalized_address(client):
    UserFactory(email=VICTIM)
    mail.outbox.clear()
    assert client.post(reverse("signup"), {"email": "VICTIM@Prestataire.COM"}).status_code == 200
    (message,) = mail.outbox  # the existing account gets a login link, not a second sign-up
    assert message.to == [VICTIM]
    assert "/connexion/lien/" in message.body and "/inscription/confirmer/" not in message.body
    assert get_user_model().objects.count() == 1


# ---------------------------------------------------------------------------------------------------------------
# Access needs a proved address
# ---------------------------------------------------------------------------------------------------------------
def test_being_a_contact_gives_nothing_before_proof(client, victim_token):
    user = UserFactory(email=VICTIM)  # an account of that address, never proved by following a link
    client.force_login(user)
    assert client.get(pickup(victim_token)).status_code == 404
    assert memberships_sync_from_proof(user=user) == [victim_token.client]
    assert client.get(pickup(victim_token)).status_code == 200
    membership = ClientMembership.objects.get(user=user)
    assert (membership.source, membership.email) == (MembershipSource.CONTACT, VICTIM)
    assert ClientMembershipEvent.objects.get().kind == ClientMembershipEvent.Kind.PROVED
    assert memberships_sync_from_proof(user=user) == []  # idempotent


def test_sign_up_with_the_exact_address_proves_it(client, victim_token):
    assert sign_up(client, "Victim@Prestataire.com").status_code == 302
    assert client.get(pickup(victim_token)).status_code == 200


def test_password_reset_link_proves_the_address(client, victim_token):
    UserFactory(email=VICTIM)
    client.post(reverse("password_reset"), {"email": VICTIM})
    (message,) = mail.outbox
    path = re.search(r"https?://[^/\s]+(/connexion/mot-de-passe/\S+/\S+/)", message.body).group(1)
    form_url = client.get(path, follow=True).redirect_chain[-1][0]
    new = "un autre mot de passe solide 42"
    assert client.post(form_url, {"new_password1": new, "new_password2": new}).status_code == 302
    assert ClientMembership.objects.filter(user__email=VICTIM, client=victim_token.client).exists()
    assert client.login(username=VICTIM, password=new)
    assert client.get(pickup(victim_token)).status_code == 200


def test_login_link_proves_the_address(client, victim_token):
    UserFactory(email=VICTIM)
    client.post(reverse("login_link_request"), {"email": VICTIM})
    (message,) = mail.outbox
    link = re.search(r"https?://[^/\s]+(/connexion/lien/\?\S+)", message.body).group(1)
    token = re.search(r"token=([^&\s]+)", link).group(1)
    assert client.post(reverse("login_link"), {"token": token}).status_code == 303
    assert client.get(pickup(victim_token)).status_code == 200


# ---------------------------------------------------------------------------------------------------------------
# Access ends on the next request
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture
def proved(client, victim_token):
    user = UserFactory(email=VICTIM)
    memberships_sync_from_proof(user=user)
    client.force_login(user)
    assert client.get(pickup(victim_token)).status_code == 200
    return user


def test_contact_removed_from_the_token_loses_access_on_next_request(client, proved, victim_token):
    victim_token.contacts.clear()
    assert client.get(pickup(victim_token)).status_code == 404
    assert client.get(reverse("portal_token", args=[victim_token.public_id])).status_code == 404
    assert client.get(reverse("request_list")).status_code == 200
    assert not Client.objects.accessible_to(proved).exists()


def test_deleted_contact_loses_access_on_next_request(client, proved, victim_token):
    Contact.objects.filter(email=VICTIM).delete()
    assert client.get(pickup(victim_token)).status_code == 404


def test_contact_of_another_client_only_does_not_keep_access(client, proved, victim_token):
    other = ClientFactory()
    issue_token(client=other, contacts=[ContactFactory(client=other, email=VICTIM)])
    victim_token.contacts.clear()
    assert client.get(pickup(victim_token)).status_code == 404


def test_admin_granted_access_survives_contact_removal(
    client, proved, victim_token, admin_client, admin_user
):
    response = admin_client.post(
        reverse("admin:tokens_clientmembership_add"),
        {"client": victim_token.client.pk, "user": proved.pk, "reason": "Prestataire sous contrat"},
    )
    assert response.status_code == 302
    membership = ClientMembership.objects.get(user=proved)
    assert (membership.source, membership.granted_by) == (MembershipSource.ADMIN, admin_user)
    event = ClientMembershipEvent.objects.get(kind=ClientMembershipEvent.Kind.GRANTED)
    assert (event.actor, event.reason) == (admin_user, "Prestataire sous contrat")
    victim_token.contacts.clear()
    assert client.get(pickup(victim_token)).status_code == 200


def test_admin_grant_without_being_a_contact(client):
    user = UserFactory()
    token = issue_token().token
    client.force_login(user)
    assert client.get(pickup(token)).status_code == 404
    ClientMembershipFactory(client=token.client, user=user, source=MembershipSource.ADMIN)
    assert client.get(pickup(token)).status_code == 200


def test_admin_removal_from_client_page_takes_effect_on_next_request(
    client, proved, victim_token, admin_client
):
    membership = ClientMembership.objects.get(user=proved)
    url = reverse("admin:tokens_client_change", args=[victim_token.client.pk])
    page = admin_client.get(url)
    assert page.status_code == 200 and VICTIM in page.content.decode()
    data = _inline_post_data(page.context["adminform"].form, page.context["inline_admin_formsets"])
    prefix = next(
        f.formset.prefix for f in page.context["inline_admin_formsets"] if f.opts.model is ClientMembership
    )
    data[f"{prefix}-0-DELETE"] = "on"
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.context and response.context["errors"]
    assert not ClientMembership.objects.filter(pk=membership.pk).exists()
    event = ClientMembershipEvent.objects.get(kind=ClientMembershipEvent.Kind.REMOVED)
    assert (event.email, event.source, event.actor.is_superuser) == (VICTIM, MembershipSource.CONTACT, True)
    assert client.get(pickup(victim_token)).status_code == 404


def test_admin_removal_action_takes_effect_on_next_request(client, admin_client, admin_user):
    user = UserFactory()
    token = issue_token().token
    membership = ClientMembershipFactory(client=token.client, user=user, source=MembershipSource.ADMIN)
    client.force_login(user)
    assert client.get(pickup(token)).status_code == 200
    response = admin_client.post(
        reverse("admin:tokens_clientmembership_changelist"),
        {"action": "remove_selected", "_selected_action": [membership.pk]},
    )
    assert response.status_code == 302
    assert client.get(pickup(token)).status_code == 404
    assert ClientMembershipEvent.objects.get().actor == admin_user
    changelist = admin_client.get(reverse("admin:tokens_clientmembership_changelist"))
    assert changelist.status_code == 200


def test_removal_service_is_audited_and_idempotent(admin_user):
    membership = ClientMembershipFactory()
    client_membership_remove(membership=membership, by=admin_user, reason="parti")
    client_membership_remove(membership=membership, by=admin_user)
    assert ClientMembershipEvent.objects.get().reason == "parti"


def test_members_add_without_a_source_is_refused():
    from django.db import IntegrityError, transaction

    client, user = ClientFactory(), UserFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        client.members.add(user)


# ---------------------------------------------------------------------------------------------------------------
# Integrators see who has access
# ---------------------------------------------------------------------------------------------------------------
def test_integrator_sees_who_has_access_and_how(client, proved, victim_token):
    colleague = UserFactory(email="collegue@prestataire.com", first_name="Col", last_name="Lègue")
    ClientMembershipFactory(client=victim_token.client, user=colleague, source=MembershipSource.ADMIN)
    gone = UserFactory(email="ancien@prestataire.com")
    ClientMembership.objects.create(
        client=victim_token.client, user=gone, source=MembershipSource.CONTACT, email=gone.email
    )  # proved once, no longer a contact: no access, not listed
    stranger = UserFactory(email="autre@ailleurs.example")
    ClientMembershipFactory(user=stranger)  # another client's member
    html = client.get(reverse("portal_access")).content.decode()
    assert VICTIM in html and "collegue@prestataire.com" in html and "Col Lègue" in html
    assert "accordé par un administrateur" in html and "contact d'un jeton, adresse prouvée" in html
    assert "ancien@prestataire.com" not in html and "autre@ailleurs.example" not in html
    assert "Qui a accès" in client.get(reverse("portal_dashboard")).content.decode()


def _inline_post_data(form, inline_formsets) -> dict:
    """The change form as the browser would post it, inlines included, nothing changed."""
    data = {}
    for bound in form:
        value = bound.value()
        if value is None:
            continue
        data[bound.html_name] = value
    for inline in inline_formsets:
        formset = inline.formset
        for key, value in formset.management_form.initial.items():
            data[f"{formset.prefix}-{key}"] = value
        for sub in formset.forms:
            for bound in sub:
                value = bound.value()
                if value is not None and value is not False:
                    data[bound.html_name] = value
    return data
