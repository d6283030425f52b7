"""Markdown written by staff (incidents, evolutions), rendered for the public: one rule for every page and feed."""

import markdown
import nh3
from django.utils.safestring import SafeString, mark_safe

URL_SCHEMES = {"http", "https", "mailto"}


def markdown_html(text: str) -> SafeString:
    """Markdown rendered, then sanitised by an allow-list (nh3): raw HTML, scripts and JS links are dropped."""
    html = markdown.markdown(text or "", extensions=["extra", "sane_lists"], output_format="html")
    return mark_safe(nh3.clean(html, url_schemes=URL_SCHEMES))  # noqa: S308 (sanitised)
