"""Domain events of the token authority, sent inside the transaction that caused them.

Other apps (the portal's webhooks) subscribe, so that tokens/ depends on none of them.
"""

from django.dispatch import Signal

# sender=Token class; kwargs: token (the revoked token), by (user or None), reason
token_revoked = Signal()
# sender=Token class; kwargs: old (superseded token), new (its successor), by
token_superseded = Signal()
# sender=Token class; kwargs: token (a live token whose secret was reported exposed), exposure (its new
# TokenExposure), revoked (whether the report revoked it)
token_exposed = Signal()
