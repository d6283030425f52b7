import datetime as dt
import random

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from tokens.models import Client, ClientMembership, Contact, MembershipSource, Privilege
from tokens.services import token_issue


def make_siret(rng: random.Random | None = None) -> str:
    """A random SIRET with a valid Luhn key (never La Poste's SIREN)."""
    rng = rng or random
    while True:
        body = [rng.randint(0, 9) for _ in range(13)]
        for check in range(10):
            digits = [*body, check]
            total = 0
            for i, d in enumerate(reversed(digits)):
                if i % 2 == 1:
                    d *= 2
                    d -= 9 if d > 9 else 0
                total += d
            if total % 10 == 0:
                siret = "".join(map(str, digits))
                if not siret.startswith("356000000"):
                    return siret


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("email",)

    email = factory.Sequence(lambda n: f"user{n}@example.org")
    password = factory.django.Password("correct horse battery staple")


class ClientFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Client

    name = factory.Sequence(lambda n: f"Commune n°{n}")
    siret = factory.LazyFunction(make_siret)


class ClientMembershipFactory(factory.django.DjangoModelFactory):
    """Access granted explicitly (source admin) unless told otherwise."""

    class Meta:
        model = ClientMembership
        django_get_or_create = ("client", "user")

    client = factory.SubFactory(ClientFactory)
    user = factory.SubFactory(UserFactory)
    source = MembershipSource.ADMIN


class ContactFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Contact

    client = factory.SubFactory(ClientFactory)
    email = factory.Sequence(lambda n: f"contact{n}@example.org")
    name = factory.Sequence(lambda n: f"Contact {n}")
    role = Contact.Role.TECHNICAL


def issue_token(
    *,
    client: Client | None = None,
    privileges: tuple[str, ...] = ("entreprises", "etablissements"),
    issued_at: dt.datetime | None = None,
    origin: str | None = None,
    contacts: int | list[Contact] = 1,
    label: str = "",
):
    """Issue a token through the real service; returns IssuedToken (token + secret)."""
    client = client or ClientFactory()
    if isinstance(contacts, int):
        contacts = [ContactFactory(client=client) for _ in range(contacts)]
    return token_issue(
        client=client,
        privileges=list(Privilege.objects.filter(code__in=privileges)),
        issued_at=issued_at or timezone.now(),
        origin=origin,
        label=label or f"Jeton {client.name}",
        contacts=contacts,
    )
