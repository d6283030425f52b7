"""The accessibility statement (/accessibilite/), linked from every page's footer."""

from django.urls import reverse


def test_accessibility_statement_page_and_footer_link(client, db):
    html = client.get(reverse("accessibility")).content.decode()
    assert "Déclaration d'accessibilité" in html
    assert "axe-core" in html and 'id="a11y-pages"' in html and 'id="a11y-known-issues"' in html
    assert 'datetime="2026-12-06"' in html
    assert 'href="mailto:accessibilite@tokenmgr.localhost"' in html
    footer = client.get(reverse("login")).content.decode()
    assert f'href="{reverse("accessibility")}" id="footer-accessibility"' in footer
