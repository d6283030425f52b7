"""Pending uploads: a legal-basis PDF kept across the re-display of a form that had other errors.

A browser never re-sends a file input, so a document received with an otherwise invalid form is stored (under
MEDIA_ROOT, random name) as a PendingUpload; the form carries its opaque id in a hidden field. The id is honoured only
for the user who uploaded it, in the same session (the session lists the ids it created), while it is younger than
MAX_AGE. It is deleted once the request holds the document, and by the periodic purge otherwise.
"""

import datetime as dt
import uuid

from django.core.files import File
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils import timezone

from .models import PendingUpload, validate_pdf

FIELD = "pending_upload"  # name of the form's hidden input
SESSION_KEY = "pending_uploads"
MAX_AGE = dt.timedelta(hours=6)
MAX_PER_SESSION = 20


def _session_ids(request) -> list[str]:
    return list(request.session.get(SESSION_KEY, []))


def pending_upload_keep(*, request, upload: UploadedFile) -> PendingUpload:
    """Store `upload` (already validated as a PDF by the form) for this user and session."""
    validate_pdf(upload)
    pending_uploads_purge()
    upload.seek(0)
    pending = PendingUpload(owner=request.user, name=(upload.name or "document.pdf")[-255:], size=upload.size)
    pending.file.save(f"{uuid.uuid4().hex}.pdf", upload, save=False)
    pending.save()
    ids = [*_session_ids(request), str(pending.public_id)][-MAX_PER_SESSION:]
    request.session[SESSION_KEY] = ids
    return pending


def pending_upload_for(*, request, upload_id: str, now: dt.datetime | None = None) -> PendingUpload | None:
    """The pending upload `upload_id` if this user stored it in this session and it is still fresh; else None."""
    upload_id = (upload_id or "").strip()
    if not upload_id or not request.user.is_authenticated or upload_id not in _session_ids(request):
        return None
    try:
        key = uuid.UUID(upload_id)
    except ValueError:
        return None
    since = (now or timezone.now()) - MAX_AGE
    return PendingUpload.objects.filter(public_id=key, owner=request.user, created_at__gt=since).first()


def pending_upload_file(pending: PendingUpload) -> File:
    """The document, under its original name, as a request's legal_basis_document takes it (checks run again)."""
    document = File(pending.file.open("rb"), name=pending.name)
    validate_pdf(document)
    return document


def _delete(pendings) -> int:
    pendings = list(pendings)
    names = [p.file.name for p in pendings if p.file]
    storage = PendingUpload._meta.get_field("file").storage
    PendingUpload.objects.filter(pk__in=[p.pk for p in pendings]).delete()

    def remove_files():
        for name in names:
            storage.delete(name)

    transaction.on_commit(remove_files)
    return len(pendings)


def pending_upload_used(*, request, pending: PendingUpload) -> None:
    """The request now holds its own copy of the document: forget the pending one."""
    request.session[SESSION_KEY] = [i for i in _session_ids(request) if i != str(pending.public_id)]
    _delete([pending])


def pending_uploads_purge(*, now: dt.datetime | None = None) -> int:
    """Delete the pending uploads older than MAX_AGE (rows and files); how many."""
    since = (now or timezone.now()) - MAX_AGE
    return _delete(PendingUpload.objects.filter(created_at__lte=since)[:500])
