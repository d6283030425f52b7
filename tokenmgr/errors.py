"""The one JSON error renderer of every API route (docs/http-api.md)."""

from http import HTTPStatus

from django.http import JsonResponse

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
