from . import request_id as _request_id  # noqa: F401  (connects the Celery signals)
from .celery import app as celery_app

__all__ = ["celery_app"]
