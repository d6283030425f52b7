"""Deprecation headers on tokenmgr's own routes, driven by the DEPRECATED_ROUTES setting.

A route (or a field of its responses) that is going away answers, until it is gone, with
- `Deprecation: @<unix seconds>` (RFC 9745: a Structured Fields date), from when it is deprecated;
- `Sunset: <HTTP-date>` (RFC 8594), when it stops working;
- `Link: <url>; rel="deprecation"` (RFC 9745), the page that explains it: the evolution entry, or a given URL.

DEPRECATED_ROUTES maps a URL name ("api:privileges" or "privileges") to
{"deprecation": ISO 8601, "sunset": ISO 8601 (optional), "evolution": entry public id (optional), "link": URL
(optional)}. The mapping is parsed once per setting value; a bad date or a sunset before its deprecation is an
ImproperlyConfigured error at the first request (and by the system check in checks.py at start-up).
"""

import datetime as dt
import functools
import json
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.urls import reverse
from django.utils.dateparse import parse_date, parse_datetime
from django.utils.http import http_date


@dataclass(frozen=True)
class Deprecation:
    deprecation: dt.datetime
    sunset: dt.datetime | None
    link: str

    def headers(self) -> dict[str, str]:
        headers = {"Deprecation": f"@{int(self.deprecation.timestamp())}"}
        if self.sunset is not None:
            headers["Sunset"] = http_date(self.sunset.timestamp())
        if self.link:
            headers["Link"] = f'<{self.link}>; rel="deprecation"'
        return headers


def _moment(value, *, route: str, key: str) -> dt.datetime:
    text = str(value)
    moment = parse_datetime(text)
    if moment is None:
        day = parse_date(text)
        if day is None:
            raise ImproperlyConfigured(
                f"DEPRECATED_ROUTES[{route!r}][{key!r}]: not an ISO 8601 date: {text!r}"
            )
        moment = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment


def entry_url(public_id) -> str:
    """The absolute URL of an evolution entry's page."""
    return settings.SITE_URL + reverse("evolution_detail", args=[public_id])


def parse(routes: dict) -> dict[str, Deprecation]:
    """The DEPRECATED_ROUTES mapping, checked."""
    if not isinstance(routes, dict):
        raise ImproperlyConfigured(
            "DEPRECATED_ROUTES must map route names to {deprecation, sunset, evolution}."
        )
    parsed = {}
    for route, spec in routes.items():
        if not isinstance(spec, dict) or "deprecation" not in spec:
            raise ImproperlyConfigured(f"DEPRECATED_ROUTES[{route!r}] needs a 'deprecation' date.")
        deprecation = _moment(spec["deprecation"], route=route, key="deprecation")
        sunset = _moment(spec["sunset"], route=route, key="sunset") if spec.get("sunset") else None
        if sunset is not None and sunset < deprecation:
            raise ImproperlyConfigured(f"DEPRECATED_ROUTES[{route!r}]: sunset before deprecation.")
        link = spec.get("link") or (entry_url(spec["evolution"]) if spec.get("evolution") else "")
        parsed[str(route)] = Deprecation(deprecation=deprecation, sunset=sunset, link=link)
    return parsed


@functools.lru_cache(maxsize=4)
def _parsed(key: str) -> dict[str, Deprecation]:
    return parse(json.loads(key))


def deprecated_routes() -> dict[str, Deprecation]:
    return _parsed(json.dumps(settings.DEPRECATED_ROUTES, sort_keys=True, default=str))


class DeprecationHeadersMiddleware:
    """Adds the deprecation headers to every response of a route named in DEPRECATED_ROUTES."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        routes = settings.DEPRECATED_ROUTES
        match = getattr(request, "resolver_match", None)
        if not routes or match is None:
            return response
        spec = deprecated_routes()
        deprecation = spec.get(match.view_name) or spec.get(match.url_name or "")
        if deprecation is not None:
            for name, value in deprecation.headers().items():
                response.headers[name] = value
        return response
