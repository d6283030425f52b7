"""Content-Security-Policy on the responses a browser renders as a document; the bearer credential of a request."""

from csp.middleware import CSPMiddleware


def bearer_token(request) -> str:
    """The credential of an `Authorization: Bearer <credential>` header (scheme in any case), else ''."""
    scheme, _, value = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


class DocumentCSPMiddleware(CSPMiddleware):
    """django-csp's middleware, skipping responses that are not HTML.

    The policy only governs documents; django-csp builds the header anew for every response (about 150 µs), which
    the JSON API — /v2/privileges is the hot path — would pay for nothing.
    """

    def process_response(self, request, response):
        if not response.get("Content-Type", "").startswith("text/html"):
            return response
        return super().process_response(request, response)
