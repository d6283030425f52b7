from django import template

from tokens.models import TokenStatus

register = template.Library()


@register.filter
def status_label(code: str) -> str:
    try:
        return TokenStatus(code).label
    except ValueError:
        return code


@register.filter
def break_underscores(code: str):
    """A privilege code that may wrap after its underscores (narrow table cells), escaped."""
    from django.utils.html import escape
    from django.utils.safestring import mark_safe

    return mark_safe(escape(code).replace("_", "_<wbr>"))  # noqa: S308 - escaped above
