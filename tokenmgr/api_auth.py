"""Authentication of the JSON API by token (docs/http-api.md): where the credential is read, how it is declared in
OpenAPI, and the 401 answer for each outcome of the token check (tokens.selectors.token_check)."""

from django.http import JsonResponse
from ninja.security import HttpBearer

from .errors import error_response
from .security import bearer_token

# TokenCheck outcome value → (code, title, detail) of the 401 answer.
UNAUTHORIZED = {
    "missing": ("missing_token", "Jeton manquant", "Passez le jeton en en-tête `Authorization: Bearer`."),
    "invalid": ("invalid_token", "Jeton invalide", "Ce jeton n'est pas reconnu."),
    "expired": ("expired_token", "Jeton expiré", "Ce jeton a expiré ; demandez son renouvellement."),
    "revoked": ("revoked_token", "Jeton révoqué", "Ce jeton a été révoqué."),
}
MISSING_WITH_QUERY = "Passez le jeton en paramètre `token` ou en en-tête `Authorization: Bearer`."


def request_token(request, *, query: bool = False) -> str:
    """The token a request presents: its bearer credential, else (routes that allow it) its `token` parameter."""
    return bearer_token(request) or (request.GET.get("token", "").strip() if query else "")


def unauthorized(outcome: str, *, query: bool = False, headers: dict[str, str] | None = None) -> JsonResponse:
    """The 401 answer for a failed token check (`outcome`: a TokenCheck value other than "ok")."""
    code, title, detail = UNAUTHORIZED[outcome]
    if outcome == "missing" and query:
        detail = MISSING_WITH_QUERY
    return error_response(401, code=code, title=title, detail=detail, headers=headers)


class DeclaredBearer(HttpBearer):
    """Declares bearer authentication in OpenAPI; the view checks the token itself, so that every answer (401 and
    403 included) has the API's error shape and goes through the rate limiter."""

    def __call__(self, request):
        return True

    def authenticate(self, request, token):  # pragma: no cover - never called: __call__ lets every request in
        return token
