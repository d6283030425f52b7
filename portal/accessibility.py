"""The accessibility statement: what was checked, how, on which pages, what is known not to conform."""

import datetime as dt

from django.conf import settings
from django.shortcuts import render
from django.views.decorators.http import require_GET

# Day of the last full check (axe-core over every page in the browser tests, keyboard walk-through, DSFR contrast).
AUDITED_ON = dt.date(2026, 12, 6)


@require_GET
def statement(request):
    return render(
        request,
        "portal/accessibility.html",
        {"audited_on": AUDITED_ON, "contact_email": settings.ACCESSIBILITY_CONTACT_EMAIL},
    )
