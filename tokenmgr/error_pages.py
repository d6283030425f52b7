"""HTML error pages in the reader's language, for the statuses Django answers without a page of its own.

Django renders 400/403/404/500 from templates of those names; a 405 (require_POST, require_http_methods, a
POST-only view) is an empty response that the browser shows as its own, untranslated, error. This middleware gives
such an empty 405 the `405.html` page, keeping its `Allow` header. API paths keep their JSON errors.
"""

from django.shortcuts import render

from .middleware import is_api_path


class MethodNotAllowedPageMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if response.status_code != 405 or response.content or is_api_path(request.path):
            return response
        page = render(request, "405.html", {"allowed": response.get("Allow", "")}, status=405)
        if response.has_header("Allow"):
            page["Allow"] = response["Allow"]
        return page
