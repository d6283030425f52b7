"""API paths never answer HTML: any error becomes the JSON error shape (docs/http-api.md)."""

import logging

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError

from .errors import error_response

logger = logging.getLogger("tokenmgr.api")

API_PREFIXES = ("/api/", "/v2/")


def is_api_path(path: str) -> bool:
    return path.startswith(API_PREFIXES) and not path.startswith("/api/docs")


class JsonErrorMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (
            response.status_code >= 400
            and is_api_path(request.path)
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            return error_response(response.status_code, headers=_kept_headers(response))
        return response

    def process_exception(self, request, exception):
        if not is_api_path(request.path):
            return None
        if isinstance(exception, OperationalError | InterfaceError):
            logger.warning("database unavailable on %s: %s", request.path, exception.__class__.__name__)
            return error_response(
                503,
                detail="La base de données est momentanément indisponible, réessayez dans quelques instants.",
                headers={"Retry-After": "5"},
            )
        if isinstance(exception, DatabaseError) or not settings.DEBUG:
            logger.exception("unhandled error on %s", request.path)
            return error_response(500, detail="Une erreur interne est survenue.")
        return None


def _kept_headers(response) -> dict[str, str]:
    return {k: v for k, v in response.items() if k in ("Retry-After", "Allow") or k.startswith("RateLimit-")}
