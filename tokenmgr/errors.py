"""The application's error type, and the one JSON error renderer and schema of every API route (docs/http-api.md).

Services raise ApplicationError; each surface maps it once: the JSON API (tokenmgr.api: 422 in the error shape),
HTML pages (tokenmgr.pages.report_error: a form error or a message), the admin (same, through the admin's messages),
the management commands (CommandError).
"""

from http import HTTPStatus

from django.http import JsonResponse
from ninja import Schema


class ApplicationError(Exception):
    """A request the domain refuses: `code` for programs and tests, `message` (French) for people, `field` when
    one input is at fault. Subclasses name the cases a caller handles differently."""

    def __init__(self, message: str, *, code: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = str(message)
        self.code = code
        self.field = field

    @property
    def messages(self) -> list[str]:
        return [self.message]

    def __str__(self) -> str:
        return self.message


class ErrorItem(Schema):
    code: str
    title: str
    detail: str


class ErrorOut(Schema):
    errors: list[ErrorItem]


DEFAULT_TITLES = {
    400: "Mauvaise requête",
    401: "Non autorisé",
    403: "Interdit",
    404: "Non trouvé",
    405: "Méthode non autorisée",
    422: "Entité non traitable",
    429: "Trop de requêtes",
    500: "Erreur interne",
    503: "Service non disponible",
}
DEFAULT_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    422: "unprocessable_entity",
    429: "rate_limited",
    500: "internal_error",
    503: "service_unavailable",
}


def error_body(status: int, *, code: str | None = None, title: str | None = None, detail: str = "") -> dict:
    return {
        "errors": [
            {
                "code": code
                or DEFAULT_CODES.get(status, HTTPStatus(status).phrase.lower().replace(" ", "_")),
                "title": title or DEFAULT_TITLES.get(status, HTTPStatus(status).phrase),
                "detail": detail or HTTPStatus(status).description,
            }
        ]
    }


def error_response(
    status: int,
    *,
    code: str | None = None,
    title: str | None = None,
    detail: str = "",
    headers: dict[str, str] | None = None,
) -> JsonResponse:
    return JsonResponse(
        error_body(status, code=code, title=title, detail=detail),
        status=status,
        headers=headers,
        json_dumps_params={"ensure_ascii": False},
    )


def body_size_error(
    request, *, limit: int, items: str, require_length: bool = False, headers: dict[str, str] | None = None
) -> JsonResponse | None:
    """The error answer for a request body that may not be read: an invalid `Content-Length` (400), none with a
    chunked body when `require_length` (411), or more than `limit` bytes (413, asking to send `items` in several
    batches). None when the body may be read."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = -1
    if length < 0:
        return error_response(400, detail="En-tête `Content-Length` invalide.", headers=headers)
    if require_length and not length and request.META.get("HTTP_TRANSFER_ENCODING"):
        return error_response(
            411,
            code="length_required",
            title="Longueur requise",
            detail="Envoyez le lot avec `Content-Length`.",
            headers=headers,
        )
    if length > limit:
        return error_response(
            413,
            code="payload_too_large",
            title="Corps trop volumineux",
            detail=f"Le corps fait {length} octets, {limit} au plus : envoyez {items} en plusieurs lots.",
            headers=headers,
        )
    return None
