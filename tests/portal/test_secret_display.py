"""A secret shown once, on every page that shows one: monospace field, a copy button revealed by the script, a live
region for the « Copié » confirmation, no inline script (the Content-Security-Policy forbids it)."""

import re

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.factories import ClientFactory
from tests.tokens.test_admin_secrets import ISSUE, _issue_data
from tokens.models import Token

pytestmark = pytest.mark.django_db


def _assert_secret_block(body: str, secret: str, field_id: str) -> None:
    field = re.search(rf'<input[^>]*id="{field_id}"[^>]*>', body).group()
    assert (
        'class="fr-input tkm-secret__value"' in field and f'value="{secret}"' in field and "readonly" in field
    )
    button = re.search(rf'<button[^>]*data-copy-target="{field_id}"[^>]*>', body).group()
    assert "hidden" in button  # shown by tokenmgr.js only: without the script, selecting the text is the way
    assert f'data-copy-status="{field_id}-status"' in button and 'data-copied="Copié"' in button
    assert f'<p class="tkm-copy-status" id="{field_id}-status" role="status" aria-live="polite"></p>' in body
    assert "<script>" not in body and "onclick" not in body


def test_portal_secret_page(logged, own, recent_auth):
    Token.objects.filter(pk=own.token.pk).update(pickup_pending_since=timezone.now())
    response = recent_auth(logged).post(reverse("token_reveal", args=[own.token.public_id]))
    assert response.status_code == 200
    body = response.content.decode()
    _assert_secret_block(body, response.context["secret"], "token-secret")
    assert 'id="copy-secret"' in body


def test_admin_issued_page(admin_client):
    admin_client.post(ISSUE, _issue_data(ClientFactory()))
    token = Token.objects.get()
    response = admin_client.get(reverse("admin:tokens_token_issued", args=[token.public_id]))
    body = response.content.decode()
    _assert_secret_block(body, response.context["secret"], "token-secret")
    assert 'class="button tkm-copy"' in body
    assert "/static/css/tokenmgr" in body and "/static/js/tokenmgr" in body
