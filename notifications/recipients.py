"""Who receives a reminder: the token's contacts (normalized, each once, requester first) or the ADMINS, and the
users that a reminder's personal sign-in link signs in."""

import functools
from collections.abc import Iterable

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Q

from accounts.identity import normalize_email_or_none
from tokens.models import Contact, Token

CONTACT_ROLE_ORDER = {role: i for i, role in enumerate(Contact.Role.values)}
NO_RECIPIENT = "aucun contact joignable et ADMINS est vide"


def magic_link_scope(public_id) -> str:
    """Sesame scope of a reminder's sign-in link: valid on that token's pages only."""
    return f"token:{public_id}"


# accounts.identity.normalize_email_or_none, memoised: it validates each address (35 µs to 110 µs depending on the
# machine's load), and the same contacts come back batch after batch and day after day.
normalized = functools.lru_cache(maxsize=1 << 16)(normalize_email_or_none)


def recipients_plan(contacts: Iterable[tuple[str, str]]) -> list[str]:
    """Normalized addresses of (email, role) contacts, each once, requester first, then technical, then business;
    addresses that do not normalize (invalid) are left out. Look-alike addresses (non-ASCII case, other scripts)
    stay distinct: accounts.identity decides who is the same person."""
    ordered = sorted(
        (CONTACT_ROLE_ORDER.get(role, len(CONTACT_ROLE_ORDER)), address)
        for address, role in ((normalized(email), role) for email, role in contacts)
        if address is not None
    )
    return list(dict.fromkeys(address for _, address in ordered))


def recipients_for(token: Token) -> list[str]:
    """The token's recipients now (its contacts, prefetched or not), as recipients_plan orders them."""
    return recipients_plan((c.email, c.role) for c in token.contacts.all())


def admin_recipients() -> list[str]:
    """The ADMINS' normalized addresses: the recipients of a token without any deliverable contact."""
    return list(dict.fromkeys(a for a in (normalized(e) for _, e in settings.ADMINS) if a))


def recipients_with_fallback(contacts: Iterable[tuple[str, str]]) -> tuple[list[str], bool]:
    recipients = recipients_plan(contacts)
    if recipients:
        return recipients, False
    return admin_recipients(), True


def link_user_allowed(user) -> bool:
    """Whether a reminder's sign-in link may sign this user in: never an inactive, staff or superuser account."""
    return bool(user.is_active and not user.is_staff and not user.is_superuser)


def link_user_is_contact(user, token: Token) -> bool:
    """Whether the user's address (normalized) is one of the token's contacts now."""
    address = normalized(getattr(user, user.USERNAME_FIELD, "") or "")
    return address is not None and address in recipients_for(token)


def link_users_get_or_create(*, emails: set[str]) -> dict[str, object]:
    """Users that reminder links sign in, by normalized address (the USERNAME_FIELD holds it), created without a
    usable password when missing. Two queries, three more when some are created.

    No user is created for an address of a staff or superuser account, and inactive, staff and superuser accounts
    are left out: a link in an email must never open the admin nor revive a disabled account.
    """
    if not emails:
        return {}
    user_model = get_user_model()
    field = user_model.USERNAME_FIELD
    email_field = user_model.get_email_field_name()
    staff_addresses = {
        address
        for pair in user_model.objects.filter(Q(is_staff=True) | Q(is_superuser=True)).values_list(
            field, email_field
        )
        for address in map(normalized, pair)
        if address is not None
    }

    def fetch() -> dict[str, object]:
        return {getattr(u, field): u for u in user_model.objects.filter(**{f"{field}__in": emails})}

    users = fetch()
    missing = emails - users.keys() - staff_addresses
    if missing:
        new = []
        for email in sorted(missing):
            user = user_model(**{field: email, email_field: email})
            user.set_unusable_password()
            new.append(user)
        user_model.objects.bulk_create(
            new, ignore_conflicts=True
        )  # a concurrent delivery may create them too
        users = fetch()
    return {e: u for e, u in users.items() if e not in staff_addresses and link_user_allowed(u)}
