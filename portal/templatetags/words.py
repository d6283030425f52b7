"""Words shown for stored codes and paths, in the reader's language (tokens.words).

`{% label_suffix %}` is the form label suffix as Django translates it (" :" with a non-breaking space in French,
":" in English): templates write `{% translate "Privilèges" %}{% label_suffix %}` instead of a hard-coded " :".
"""

from django import template
from django.utils.translation import gettext

from tokens import words

register = template.Library()


@register.simple_tag
def label_suffix() -> str:
    return gettext(":")


@register.filter
def contact_role(code: str) -> str:
    """'requester' → 'demandeur' (Contact.Role)."""
    return words.contact_role_label(code)


@register.filter
def request_state(code: str) -> str:
    """'submitted' → 'soumise' (AccessRequest.State)."""
    return words.request_state_label(code)


@register.filter
def document_name(value) -> str:
    return words.document_name(value)


@register.filter
def diff_value(value, field: str):
    """A value of the request diff: labels for coded choices, file names for stored paths."""
    return words.request_field_display(field, value)
