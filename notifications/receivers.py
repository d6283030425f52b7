"""Webhook events for what happens to tokens anywhere (admin, portal, access-request validation)."""

from django.dispatch import receiver

from tokens.signals import token_revoked, token_superseded

from .webhooks import token_payload, webhook_emit


@receiver(token_revoked, dispatch_uid="notifications.webhooks.token_revoked")
def _revoked(sender, *, token, reason, **kwargs):
    webhook_emit(
        client=token.client,
        event_type="token.revoked",
        payload={"token": token_payload(token), "reason": reason},
        dedup_key=f"token.revoked:{token.public_id}",
    )


@receiver(token_superseded, dispatch_uid="notifications.webhooks.token_superseded")
def _renewal_validated(sender, *, old, new, **kwargs):
    webhook_emit(
        client=old.client,
        event_type="token.renewal_validated",
        payload={"token": token_payload(old), "new_token": token_payload(new)},
        dedup_key=f"token.renewal_validated:{old.public_id}:{new.public_id}",
    )
