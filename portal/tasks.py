"""Thin Celery tasks of the portal; each is safe to run twice."""

from celery import shared_task

from . import services


@shared_task(acks_late=True, ignore_result=True)
def account_email_send(kind: str, email: str, next_url: str = "") -> int:
    """Login link, password reset or sign-up link: per-address limit, lookup and sending (portal.services)."""
    return services.account_email_send(kind=kind, email=email, next_url=next_url)
