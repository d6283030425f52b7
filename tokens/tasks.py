from celery import shared_task

from .uploads import pending_uploads_purge


@shared_task(name="tokens.purge_pending_uploads")
def purge_pending_uploads() -> int:
    """Hourly: delete the legal-basis PDFs kept for a form that was never sent again. Safe to run twice."""
    return pending_uploads_purge()
