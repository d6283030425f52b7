"""Benchmark baseline (bench/privileges.py): the cheapest Django JSON view, behind the same middleware stack.

Routed only when settings.BENCH_VIEWS is true (never in production)."""

from django.http import JsonResponse
from django.urls import path


def bare_json(request):
    return JsonResponse({"privileges": ["entreprises"]})


urlpatterns = [path("bench/bare", bare_json, name="bench-bare")]
