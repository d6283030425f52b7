"""The one NinjaAPI of the project: every JSON route, its OpenAPI document and Swagger UI (served locally)."""

from django.core.exceptions import ValidationError as DjangoValidationError
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError

from .errors import ApplicationError, error_response


class SiteRootAPI(NinjaAPI):
    """Mounted at the site root without ninja's home page (tokenmgr/urls.py): the root path is "/" itself."""

    def get_root_path(self, path_params) -> str:
        return "/"


api = SiteRootAPI(
    title="tokenmgr",
    version="1.0",
    description="Jetons d'accès, privilèges et disponibilité des API.",
    openapi_url="/api/openapi.json",
    docs_url="/api/docs/",
    urls_namespace="api",
)


@api.exception_handler(NinjaValidationError)
def _invalid(request, exc):
    details = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', [])[1:]) or 'requête'} : {e.get('msg', '')}"
        for e in exc.errors
    )
    return error_response(422, detail=details or "Paramètre invalide.")


@api.exception_handler(DjangoValidationError)
def _django_invalid(request, exc):
    return error_response(422, detail=" ".join(exc.messages))


@api.exception_handler(ApplicationError)
def _refused(request, exc):
    return error_response(422, code=exc.code, detail=exc.message)


@api.exception_handler(AuthenticationError)
def _unauthenticated(request, exc):
    return error_response(401, detail="Jeton manquant ou invalide.")


@api.exception_handler(HttpError)
def _http_error(request, exc):
    return error_response(exc.status_code, detail=str(exc))


def _register_routers() -> None:
    from availability.api import router as availability_router
    from evolutions.api import router as evolutions_router
    from tokens.api import router as tokens_router
    from tokens.api_exposure import router as exposure_router

    api.add_router("", tokens_router)
    api.add_router("", availability_router)
    api.add_router("", evolutions_router)
    api.add_router("", exposure_router)


_register_routers()
