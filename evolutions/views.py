"""Public pages of the evolutions: the list (filter by kind and endpoint, upcoming sunsets first) and one entry."""

from django.http import Http404
from django.shortcuts import render
from django.utils import timezone

from . import selectors
from .models import EvolutionKind


def evolutions(request):
    now = timezone.now()
    filters, errors = selectors.filters_from(request.GET)
    entries = list(selectors.published_evolutions(filters=filters, now=now))
    return render(
        request,
        "evolutions/list.html",
        {
            "entries": entries,
            "filters": filters,
            "errors": errors,
            "kinds": EvolutionKind.choices,
            "endpoints": selectors.endpoint_choices(),
            "now": now,
        },
        status=400 if errors else 200,
    )


def evolution_detail(request, public_id):
    entry = selectors.evolution_by_public_id(public_id)
    if entry is None:
        raise Http404
    return render(request, "evolutions/detail.html", {"entry": entry, "now": timezone.now()})
