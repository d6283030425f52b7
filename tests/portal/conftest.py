import pytest

from tests.factories import ClientFactory, ClientMembershipFactory, UserFactory, issue_token


@pytest.fixture
def member(db):
    """A user who belongs to one client holding one token."""
    user = UserFactory()
    client = ClientFactory(name="Commune de Saint-Martin-des-Champs")
    ClientMembershipFactory(client=client, user=user)
    return user


@pytest.fixture
def own_client(member):
    return member.clients.get()


@pytest.fixture
def own(own_client):
    return issue_token(client=own_client, label="Portail des aides")


@pytest.fixture
def foreign(db):
    """A token of a client the member does not belong to."""
    return issue_token(label="Jeton d'un autre client")


@pytest.fixture
def logged(client, member):
    client.force_login(member)
    return client


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch):
    """Delivery tasks are enqueued on commit: record them instead of talking to a broker."""
    sent = []
    monkeypatch.setattr(
        "notifications.webhooks.enqueue_delivery", lambda delivery_id, countdown=0: sent.append(delivery_id)
    )
    return sent
