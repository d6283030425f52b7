"""Access to clients: proved by a contact's own mailbox, or granted by an admin."""

from django.db import transaction
from django.db.models import F

from accounts.identity import normalize_email

from ..models import (
    Client,
    ClientMembership,
    ClientMembershipEvent,
    MembershipSource,
)

# ------------------------------------------------------------------------------
# Access to clients: proved by a contact's own mailbox, or granted by an admin
# ------------------------------------------------------------------------------


@transaction.atomic
def memberships_sync_from_proof(*, user) -> list[Client]:
    """`user` just proved they receive mail at `user.email` (they followed a link mailed there: sign-up
    confirmation, login link, password reset, reminder link): join every client one of whose tokens lists that exact
    address as a contact. Returns the clients joined now. Access lasts while the address stays such a contact
    (ClientMembership.objects.effective())."""
    email = normalize_email(user.email)
    clients = list(
        Client.objects.filter(contacts__email=email, contacts__tokens__client=F("pk"))
        .exclude(memberships__user=user)
        .distinct()
        .order_by("pk")
    )
    for client in clients:
        _, created = ClientMembership.objects.get_or_create(
            client=client, user=user, defaults={"source": MembershipSource.CONTACT, "email": email}
        )
        if created:
            ClientMembershipEvent.objects.create(
                client=client,
                user=user,
                email=email,
                kind=ClientMembershipEvent.Kind.PROVED,
                source=MembershipSource.CONTACT,
                actor=user,
            )
    # A membership proved earlier with another address of the same account now counts with this one.
    ClientMembership.objects.filter(user=user, source=MembershipSource.CONTACT).exclude(email=email).update(
        email=email
    )
    return clients


@transaction.atomic
def client_membership_grant(*, client: Client, user, by, reason: str = "") -> ClientMembership:
    """An admin's explicit grant: lasts whether or not the person is a contact, until an admin removes it."""
    membership, created = ClientMembership.objects.select_for_update().get_or_create(
        client=client,
        user=user,
        defaults={"source": MembershipSource.ADMIN, "granted_by": by},
    )
    if not created and membership.source == MembershipSource.ADMIN:
        return membership
    if not created:
        membership.source, membership.granted_by, membership.email = MembershipSource.ADMIN, by, ""
        membership.save(update_fields=["source", "granted_by", "email"])
    ClientMembershipEvent.objects.create(
        client=client,
        user=user,
        email=user.email,
        kind=ClientMembershipEvent.Kind.GRANTED,
        source=MembershipSource.ADMIN,
        actor=by,
        reason=(reason or "").strip(),
    )
    return membership


@transaction.atomic
def client_membership_remove(*, membership: ClientMembership, by, reason: str = "") -> None:
    """An admin removes someone's access: effective on that person's next request. A contact who proves their
    address again (next link followed) joins again: stop listing them as a contact to keep them out."""
    membership = ClientMembership.objects.select_related("user").filter(pk=membership.pk).first()
    if membership is None:
        return
    ClientMembershipEvent.objects.create(
        client_id=membership.client_id,
        user=membership.user,
        email=membership.user.email,
        kind=ClientMembershipEvent.Kind.REMOVED,
        source=membership.source,
        actor=by,
        reason=(reason or "").strip(),
    )
    membership.delete()
