"""Template side of tokens.privilege_display: `{{ privilege|privilege }}`."""

from django import template

from tokens.privilege_display import privilege_html

register = template.Library()


@register.filter(name="privilege")
def privilege_filter(privilege):
    return privilege_html(privilege)


@register.filter(name="privilege_code")
def privilege_code_filter(code: str):
    """A privilege known by its code only (a request's diff): shown like the others, label first; an unknown code
    (removed from the catalogue since) as it is."""
    from tokens.models import Privilege

    privilege = Privilege.objects.filter(code=code).only("code", "label").first()
    return privilege_html(privilege) if privilege is not None else code
