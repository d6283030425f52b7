"""Instructors never decide a request they submitted or one concerning a client they are a member of."""

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from tests.factories import ClientFactory, ClientMembershipFactory, UserFactory
from tests.tokens.test_requests import submitted_request
from tokenmgr.errors import ApplicationError
from tokens import services
from tokens.models import AccessRequest

DECISIONS = {
    "validate": {},
    "refuse": {"reason": "Cadre juridique insuffisant."},
    "request_changes": {"reason": "Précisez le texte."},
}


def _instructor(username):
    user = UserFactory(email=username, is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="instruct_accessrequest"))
    return user


@pytest.fixture
def instructor(db):
    return _instructor("instructrice@tokenmgr.example")


@pytest.fixture
def organisation(db):
    return ClientFactory(name="Mairie de Conflans")


@pytest.fixture
def applicant(organisation):
    user = UserFactory(email="agent@conflans.example")
    ClientMembershipFactory(client=organisation, user=user)
    return user


def _decide(action, access_request, by):
    return getattr(services, f"access_request_{action}")(
        access_request=access_request, by=by, **DECISIONS[action]
    )


@pytest.mark.parametrize("action", DECISIONS)
def test_an_instructor_cannot_decide_their_own_request(organisation, action):
    instructor = _instructor("instructeur-demandeur@tokenmgr.example")
    ClientMembershipFactory(client=organisation, user=instructor)
    ar = submitted_request(client=organisation, applicant=instructor)
    organisation.members.remove(instructor)  # even once no longer a member: they submitted it
    with pytest.raises(ApplicationError) as exc:
        _decide(action, ar, instructor)
    assert exc.value.code == "conflict_of_interest" and "vous-même" in exc.value.message
    ar.refresh_from_db()
    assert ar.state == AccessRequest.State.SUBMITTED and ar.decided_by is None


@pytest.mark.parametrize("action", DECISIONS)
def test_an_instructor_member_of_the_client_cannot_decide(organisation, applicant, instructor, action):
    ar = submitted_request(client=organisation, applicant=applicant)
    ClientMembershipFactory(client=organisation, user=instructor)
    with pytest.raises(ApplicationError) as exc:
        _decide(action, ar, instructor)
    assert exc.value.code == "conflict_of_interest" and "membre" in exc.value.message
    ar.refresh_from_db()
    assert ar.state == AccessRequest.State.SUBMITTED
    # another instructor, with no tie to the client, decides it
    organisation.members.remove(instructor)
    _decide(action, ar, instructor)
    ar.refresh_from_db()
    assert ar.state != AccessRequest.State.SUBMITTED


def test_admin_explains_the_conflict_and_offers_no_decision(client, organisation, applicant, instructor):
    ar = submitted_request(client=organisation, applicant=applicant)
    ClientMembershipFactory(client=organisation, user=instructor)
    client.force_login(instructor)
    page = client.get(reverse("admin:tokens_accessrequest_change", args=[ar.pk]))
    html = page.content.decode().replace("&#x27;", "'")
    assert page.status_code == 200
    assert 'id="ar-conflict"' in html and "membre de l'organisation concernée" in html
    assert 'data-action="validate"' not in html and 'data-action="refuse"' not in html
    for action, payload in DECISIONS.items():
        url = reverse("admin:tokens_accessrequest_action", args=[ar.pk, action])
        assert client.get(url).status_code == 302  # no decision form
        response = client.post(url, payload, follow=True)
        assert "un autre instructeur doit en décider" in response.content.decode().replace("&#x27;", "'")
    ar.refresh_from_db()
    assert ar.state == AccessRequest.State.SUBMITTED and ar.decided_by is None
    # without the tie, the same instructor sees the decision buttons
    organisation.members.remove(instructor)
    html = client.get(reverse("admin:tokens_accessrequest_change", args=[ar.pk])).content.decode()
    assert 'data-action="validate"' in html and 'id="ar-conflict"' not in html


def test_admin_own_request(client, organisation):
    instructor = _instructor("instructeur-demandeur@tokenmgr.example")
    ClientMembershipFactory(client=organisation, user=instructor)
    ar = submitted_request(client=organisation, applicant=instructor)
    organisation.members.remove(instructor)
    client.force_login(instructor)
    html = client.get(reverse("admin:tokens_accessrequest_change", args=[ar.pk])).content.decode()
    assert 'id="ar-conflict"' in html and 'data-action="validate"' not in html
    response = client.post(reverse("admin:tokens_accessrequest_action", args=[ar.pk, "validate"]), {})
    assert response.status_code == 302
    ar.refresh_from_db()
    assert ar.state == AccessRequest.State.SUBMITTED
