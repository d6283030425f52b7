"""Template side of tokens.privilege_display: `{{ privilege|privilege }}`."""

from django import template

from tokens.privilege_display import privilege_html

register = template.Library()


@register.filter(name="privilege")
def privilege_filter(privilege):
    return privilege_html(privilege)
