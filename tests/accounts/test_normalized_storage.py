"""Accounts and contacts store an address only in its normalized form, on every write path."""

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import IntegrityError, transaction
from django.urls import reverse

from accounts.identity import InvalidEmail
from tests.factories import ClientFactory, issue_token
from tokenmgr.errors import ApplicationError
from tokens import importing
from tokens.forms import AccessRequestForm
from tokens.models import Contact
from tokens.selectors import emails_dedupe
from tokens.services import ContactData, contacts_get_or_create

DOTLESS = "victim@prestata\u0131re.com"
FULLWIDTH = "victim@\uff50restataire.com"

pytestmark = pytest.mark.django_db


# ---------------------------------------------------------------------------------------------------------------
# Accounts
# ---------------------------------------------------------------------------------------------------------------
def test_create_user_stores_the_normalized_address_and_it_is_unique():
    User = get_user_model()
    user = User.objects.create_user("  Ana@Example.ORG ", "pw-0123456789")
    assert user.email == "ana@example.org" and user.get_username() == "ana@example.org"
    assert User.USERNAME_FIELD == "email" and "username" not in [f.name for f in User._meta.fields]
    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create_user("ANA@example.org")
    idn = User.objects.create_user(DOTLESS)
    assert idn.email == "victim@xn--prestatare-4ub.com"


def test_save_and_clean_normalize_or_refuse():
    User = get_user_model()
    user = User(email="Bob@Example.org")
    user.full_clean(exclude=["password"])
    assert user.email == "bob@example.org"
    with pytest.raises(ValidationError) as error:
        User(email=FULLWIDTH).full_clean(exclude=["password"])
    assert error.value.message_dict["email"] == ["Nom de domaine invalide dans l'adresse e-mail."]
    with pytest.raises(InvalidEmail):
        User(email=FULLWIDTH).save()


def test_createsuperuser_command_uses_the_email():
    call_command(
        "createsuperuser",
        "--noinput",
        "--email",
        "Root@Example.org",
        stdout=io.StringIO(),
        stderr=io.StringIO(),
    )
    root = get_user_model().objects.get()
    assert (root.email, root.is_superuser) == ("root@example.org", True)


def test_admin_creates_users_by_normalized_email(admin_client):
    url = reverse("admin:accounts_user_add")
    password = "un mot de passe solide 42"
    response = admin_client.post(
        url, {"email": "New@Example.org", "password1": password, "password2": password}
    )
    assert response.status_code == 302
    assert get_user_model().objects.filter(email="new@example.org").exists()
    again = admin_client.post(url, {"email": "NEW@example.org", "password1": password, "password2": password})
    assert again.status_code == 200 and "email" in again.context["adminform"].form.errors
    bad = admin_client.post(url, {"email": FULLWIDTH, "password1": password, "password2": password})
    assert bad.context["adminform"].form.errors["email"] == ["Nom de domaine invalide dans l'adresse e-mail."]
    assert admin_client.get(reverse("admin:accounts_user_changelist"), {"q": "new@"}).status_code == 200


# ---------------------------------------------------------------------------------------------------------------
# Contacts
# ---------------------------------------------------------------------------------------------------------------
def test_contacts_are_stored_normalized_and_found_again():
    client = ClientFactory()
    (first,) = contacts_get_or_create(client=client, contacts=[ContactData(email=" Victim@Prestataire.COM ")])
    (again,) = contacts_get_or_create(client=client, contacts=[ContactData(email="victim@prestataire.com")])
    (look_alike,) = contacts_get_or_create(client=client, contacts=[ContactData(email=DOTLESS)])
    assert first.pk == again.pk and first.email == "victim@prestataire.com"
    assert look_alike.pk != first.pk and look_alike.email.startswith("victim@xn--")
    with pytest.raises(ApplicationError):
        contacts_get_or_create(client=client, contacts=[ContactData(email=FULLWIDTH)])


def test_contact_uniqueness_uses_the_normalized_value():
    client = ClientFactory()
    Contact.objects.create(client=client, email="A@Example.org")
    with pytest.raises(IntegrityError), transaction.atomic():
        Contact.objects.create(client=client, email="a@EXAMPLE.org")


def test_admin_contact_form_normalizes_and_refuses_invalid(admin_client):
    client = ClientFactory()
    url = reverse("admin:tokens_contact_add")
    data = {"client": client.pk, "email": "Tech@Mairie.FR", "name": "", "phone": "", "role": "technical"}
    assert admin_client.post(url, data).status_code == 302
    assert Contact.objects.get().email == "tech@mairie.fr"
    duplicate = admin_client.post(url, {**data, "email": "TECH@mairie.fr"})
    assert duplicate.status_code == 200 and Contact.objects.count() == 1
    bad = admin_client.post(url, {**data, "email": FULLWIDTH})
    assert bad.context["adminform"].form.errors["email"] == ["Nom de domaine invalide dans l'adresse e-mail."]


def test_admin_issue_form_new_contacts_are_normalized(admin_client):
    from tokens.admin.tokens import TokenIssueForm

    client = ClientFactory()
    form = TokenIssueForm(
        data={"client": client.pk, "new_contacts": f"A@Example.org\na@example.org\n{FULLWIDTH}"}
    )
    form.is_valid()
    assert "Nom de domaine invalide" in str(form.errors["new_contacts"])
    form = TokenIssueForm(data={"client": client.pk, "new_contacts": "A@Example.org\na@example.org"})
    form.is_valid()
    assert form.cleaned_data["new_contacts"] == ["a@example.org"]


def test_access_request_form_gives_a_clear_error_for_an_invalid_domain():
    form = AccessRequestForm(data={"technical_email": FULLWIDTH, "requester_email": "Chef@Mairie.fr"})
    assert not form.is_valid()
    assert form.errors["technical_email"] == ["Nom de domaine invalide dans l'adresse e-mail."]
    assert form.cleaned_data["requester_email"] == "chef@mairie.fr"


def test_import_validation_normalizes_addresses():
    assert importing.check_email("Alice@Example.ORG") == "alice@example.org"
    assert importing.check_email(DOTLESS) == "victim@xn--prestatare-4ub.com"
    assert importing.check_emails(["A@x.org", "a@X.org", DOTLESS]) == [
        "a@x.org",
        "victim@xn--prestatare-4ub.com",
    ]
    with pytest.raises(importing.InvalidValue):
        importing.check_email(FULLWIDTH)


def test_emails_dedupe_keeps_look_alikes_apart():
    assert emails_dedupe(emails=["Victim@prestataire.com", "victim@PRESTATAIRE.com", DOTLESS, ""]) == [
        "Victim@prestataire.com",
        DOTLESS,
    ]


def test_issued_token_contacts_are_normalized():
    client = ClientFactory()
    token = issue_token(
        client=client, contacts=[Contact.objects.create(client=client, email="X@Y.org")]
    ).token
    assert list(token.contacts.values_list("email", flat=True)) == ["x@y.org"]
