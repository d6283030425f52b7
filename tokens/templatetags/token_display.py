"""Template side of tokens.privilege_display: `{{ privilege|privilege }}`, `{% privilege_code code %}`."""

from django import template

from tokens.privilege_display import privilege_html

register = template.Library()

_CATALOGUE = object()  # the render context's key for the catalogue read once per page


@register.filter(name="privilege")
def privilege_filter(privilege):
    return privilege_html(privilege)


@register.simple_tag(name="privilege_code", takes_context=True)
def privilege_code_tag(context, code: str):
    """A privilege known by its code only (a request's diff): shown like the others, label first; an unknown code
    (removed from the catalogue since) as it is.

    The catalogue (a few dozen rows) is read once per rendered page and kept in its render context, so a diff of
    any number of codes costs one query.
    """
    catalogue = context.render_context.get(_CATALOGUE)
    if catalogue is None:
        from tokens.models import Privilege

        catalogue = {p.code: p for p in Privilege.objects.only("code", "label")}
        context.render_context[_CATALOGUE] = catalogue
    privilege = catalogue.get(code)
    return privilege_html(privilege) if privilege is not None else code
