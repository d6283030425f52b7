"""A request id on every log line, from the web request into the Celery tasks it enqueues."""

import contextvars
import logging
import re
import uuid

from celery import signals

current_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

HEADER = "X-Request-ID"
_VALID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def new_id() -> str:
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Takes a well-formed incoming X-Request-ID (from a proxy) or makes one; echoes it on the response."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get(HEADER, "")
        request.id = incoming if _VALID.match(incoming) else new_id()
        current_request_id.set(request.id)
        response = self.get_response(request)
        response[HEADER] = request.id
        # Cleared when the response is closed, not here: Django logs 4xx/5xx lines (django.request) and gunicorn its
        # access line after the middleware has returned, and those lines must carry the id too.
        response._resource_closers.append(_clear)
        return response


def _clear() -> None:
    current_request_id.set("-")


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id.get()
        return True


@signals.before_task_publish.connect
def _propagate(headers=None, **kwargs):
    if headers is not None and "request_id" not in headers:
        headers["request_id"] = current_request_id.get()


@signals.task_prerun.connect
def _adopt(task=None, **kwargs):
    rid = getattr(task.request, "request_id", None) if task else None
    task.request.__dict__["_request_id_token"] = current_request_id.set(rid or f"task-{new_id()[:16]}")


@signals.task_postrun.connect
def _release(task=None, **kwargs):
    token = task.request.__dict__.pop("_request_id_token", None) if task else None
    if token is not None:
        current_request_id.reset(token)
