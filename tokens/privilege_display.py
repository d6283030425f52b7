"""How a privilege reads for a person, on every page (portal, request pages, admin): its label, then its code in
small monospace. Never the bare code, never in capitals."""

from collections.abc import Iterable

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString


def privilege_html(privilege) -> SafeString:
    """One privilege (anything with `code` and `label`): `<label> <small><code>code</code></small>`, escaped.

    Plain `<small>` and `<code>` keep it readable where the site stylesheet is absent (the admin, an email client);
    `tkm-privilege` lets the portal style it.
    """
    label = getattr(privilege, "label", "") or privilege.code
    return format_html(
        '<span class="tkm-privilege">{} <small class="tkm-privilege__code"><code>{}</code></small></span>',
        label,
        privilege.code,
    )


def privilege_text(privilege) -> str:
    """The same in plain text (a select option, a calendar event): `<label> — <code>`."""
    label = getattr(privilege, "label", "") or privilege.code
    return f"{label} — {privilege.code}" if label != privilege.code else privilege.code


def privileges_html(privileges: Iterable, *, separator: str = "<br>") -> SafeString:
    """Several privileges, one per line by default (the admin's list and change pages)."""
    return format_html_join(SafeString(separator), "{}", ((privilege_html(p),) for p in privileges))
