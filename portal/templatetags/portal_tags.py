from django import template

from tokens.models import TokenStatus

register = template.Library()


@register.filter
def status_label(code: str) -> str:
    try:
        return TokenStatus(code).label
    except ValueError:
        return code
