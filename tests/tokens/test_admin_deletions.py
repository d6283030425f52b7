"""Deleting a privilege or a contact: permissions, one event per token changed, token-check cache emptied."""

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied
from django.urls import reverse

from tests.factories import ClientFactory, ContactFactory, issue_token
from tokens.models import Contact, Privilege, Token, TokenEvent
from tokens.selectors import check_cache
from tokens.services import contact_delete, privilege_delete

pytestmark = pytest.mark.django_db


@pytest.fixture
def cached(settings):
    settings.TOKEN_CHECK_CACHE_SECONDS = 3600


def _staff(django_user_model, *codenames):
    user = django_user_model.objects.create_user("agent", "agent@example.org", "x", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="tokens", codename__in=codenames)
    )
    return user


def _privileges(client, secret):
    return client.get("/v2/privileges", {"token": secret}).json()["privileges"]


# ------------------------------------------------------------------------------
# Privileges
# ------------------------------------------------------------------------------
def test_admin_privilege_delete_writes_events_and_empties_the_check_cache(
    admin_client, admin_user, cached, django_capture_on_commit_callbacks
):
    holders = [issue_token(privileges=("entreprises", "associations")) for _ in range(2)]
    other = issue_token(privileges=("entreprises",))
    assert _privileges(admin_client, holders[0].secret) == ["associations", "entreprises"]
    assert check_cache._entries  # the answer is cached for an hour
    privilege = Privilege.objects.get(code="associations")

    url = reverse("admin:tokens_privilege_delete", args=[privilege.pk])
    confirm = admin_client.get(url)
    assert confirm.status_code == 200 and not confirm.context["perms_lacking"]
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = admin_client.post(url, {"post": "yes"})
    assert response.status_code == 302
    assert callbacks  # the cache is emptied again once the deletion is committed
    assert not Privilege.objects.filter(code="associations").exists()

    events = TokenEvent.objects.filter(kind=TokenEvent.Kind.PRIVILEGE_REMOVED)
    assert sorted(e.token_id for e in events) == sorted(h.token.pk for h in holders)
    for event in events:
        assert event.actor == admin_user
        assert event.data == {"privilege": "associations", "label": privilege.label}
    assert not TokenEvent.objects.filter(token=other.token, kind=TokenEvent.Kind.PRIVILEGE_REMOVED).exists()
    # The API answers from the database again: the deleted privilege is gone at once.
    assert _privileges(admin_client, holders[0].secret) == ["entreprises"]


def test_delete_selected_privileges_go_through_the_service(admin_client, admin_user):
    holder = issue_token(privileges=("entreprises", "associations", "exercices"))
    selected = list(
        Privilege.objects.filter(code__in=["associations", "exercices"]).values_list("pk", flat=True)
    )
    changelist = reverse("admin:tokens_privilege_changelist")
    response = admin_client.post(
        changelist, {"action": "delete_selected", "_selected_action": selected, "post": "yes"}
    )
    assert response.status_code == 302
    assert list(holder.token.privileges.values_list("code", flat=True)) == ["entreprises"]
    assert sorted(
        TokenEvent.objects.filter(token=holder.token, kind="privilege_removed").values_list(
            "data__privilege", flat=True
        )
    ) == ["associations", "exercices"]


def test_privilege_delete_needs_the_permissions(client, django_user_model):
    holder = issue_token(privileges=("entreprises", "associations"))
    privilege = Privilege.objects.get(code="associations")
    url = reverse("admin:tokens_privilege_delete", args=[privilege.pk])

    # Without the delete permission: refused by the admin and by the service.
    viewer = _staff(django_user_model, "view_privilege", "change_privilege")
    client.force_login(viewer)
    assert client.post(url, {"post": "yes"}).status_code == 403
    with pytest.raises(PermissionDenied):
        privilege_delete(privilege=privilege, by=viewer)
    with pytest.raises(PermissionDenied):
        privilege_delete(privilege=privilege, by=None)

    # With it, but held by tokens: changing those tokens needs the token change permission too.
    viewer.delete()
    deleter = _staff(django_user_model, "view_privilege", "delete_privilege")
    client.force_login(deleter)
    confirm = client.get(url)
    assert confirm.status_code == 200 and confirm.context["perms_lacking"] == {"jetons"}
    assert client.post(url, {"post": "yes"}).status_code == 403
    with pytest.raises(PermissionDenied):
        privilege_delete(privilege=privilege, by=deleter)
    assert Privilege.objects.filter(pk=privilege.pk).exists()
    assert holder.token.privileges.count() == 2
    assert not TokenEvent.objects.filter(kind=TokenEvent.Kind.PRIVILEGE_REMOVED).exists()

    # A privilege no token holds: the delete permission is enough.
    unused = Privilege.objects.create(code="inutilise", label="Inutilisé")
    assert (
        client.post(reverse("admin:tokens_privilege_delete", args=[unused.pk]), {"post": "yes"}).status_code
        == 302
    )
    assert not Privilege.objects.filter(pk=unused.pk).exists()


# ------------------------------------------------------------------------------
# Contacts
# ------------------------------------------------------------------------------
def test_admin_contact_delete_writes_events_and_empties_the_check_cache(admin_client, admin_user, cached):
    client = ClientFactory()
    contact = ContactFactory(client=client, email="dev@mairie.example")
    kept = ContactFactory(client=client)
    first = issue_token(client=client, contacts=[contact, kept])
    second = issue_token(client=client, contacts=[contact])
    _privileges(admin_client, first.secret)
    assert check_cache._entries

    response = admin_client.post(reverse("admin:tokens_contact_delete", args=[contact.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert not Contact.objects.filter(pk=contact.pk).exists()
    assert not check_cache._entries
    events = TokenEvent.objects.filter(kind=TokenEvent.Kind.CONTACT_REMOVED).order_by("token_id")
    assert [e.token_id for e in events] == sorted([first.token.pk, second.token.pk])
    assert {(e.actor, e.data["contact"], e.data["role"]) for e in events} == {
        (admin_user, "dev@mairie.example", contact.role)
    }
    assert list(first.token.contacts.all()) == [kept]


def test_delete_selected_contacts_and_the_client_inline_go_through_the_service(admin_client):
    client = ClientFactory()
    a, b, c = (ContactFactory(client=client) for _ in range(3))
    token = issue_token(client=client, contacts=[a, b, c]).token
    response = admin_client.post(
        reverse("admin:tokens_contact_changelist"),
        {"action": "delete_selected", "_selected_action": [a.pk, b.pk], "post": "yes"},
    )
    assert response.status_code == 302
    assert TokenEvent.objects.filter(token=token, kind="contact_removed").count() == 2

    # Deleting the last one from the client's page (its contacts inline).
    page = admin_client.get(reverse("admin:tokens_client_change", args=[client.pk]))
    data = _inline_post_data(page.context["adminform"].form, page.context["inline_admin_formsets"])
    prefix = "contacts"
    data[f"{prefix}-0-DELETE"] = "on"
    assert data[f"{prefix}-0-id"] == c.pk
    response = admin_client.post(reverse("admin:tokens_client_change", args=[client.pk]), data)
    assert response.status_code == 302, response.context and response.context["errors"]
    assert not Contact.objects.filter(pk=c.pk).exists()
    assert TokenEvent.objects.filter(token=token, kind="contact_removed").count() == 3
    assert not Token.objects.get(pk=token.pk).contacts.exists()


def _inline_post_data(form, inline_admin_formsets) -> dict:
    """The POST a browser would send for the change form as rendered (main form and every inline)."""
    data = {}

    def put(key, value):
        if isinstance(value, list | tuple):
            data[key] = [getattr(v, "pk", v) for v in value]
        elif value is not None:
            data[key] = getattr(value, "pk", value)

    for name in form.fields:
        put(name, form[name].value())
    for inline in inline_admin_formsets:
        formset = inline.formset
        for key, value in formset.management_form.initial.items():
            data[f"{formset.prefix}-{key}"] = value
        for subform in formset.forms:
            for name in subform.fields:
                put(subform.add_prefix(name), subform[name].value())
    return data


def test_contact_delete_needs_the_permissions(client, django_user_model):
    contact = ContactFactory()
    issue_token(client=contact.client, contacts=[contact])
    url = reverse("admin:tokens_contact_delete", args=[contact.pk])
    deleter = _staff(django_user_model, "view_contact", "delete_contact")
    client.force_login(deleter)
    assert client.get(url).context["perms_lacking"] == {"jetons"}
    assert client.post(url, {"post": "yes"}).status_code == 403
    with pytest.raises(PermissionDenied):
        contact_delete(contact=contact, by=deleter)
    assert Contact.objects.filter(pk=contact.pk).exists()
    assert not TokenEvent.objects.filter(kind=TokenEvent.Kind.CONTACT_REMOVED).exists()

    deleter.user_permissions.add(Permission.objects.get(codename="change_token"))
    deleter = django_user_model.objects.get(pk=deleter.pk)  # permissions are cached on the instance
    assert contact_delete(contact=contact, by=deleter) == 1
    assert TokenEvent.objects.get(kind=TokenEvent.Kind.CONTACT_REMOVED).actor == deleter
