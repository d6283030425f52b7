"""The longest accepted secret is defined once (tokens.credentials.SECRET_MAX_LENGTH): every surface reads it."""

import pytest
from django.urls import reverse
from django.utils import timezone

from portal.forms import VerifyForm
from tokens.admin import tokens as token_admin
from tokens.credentials import SECRET_MAX_LENGTH
from tokens.selectors import TokenCheck, token_by_secret, token_check

pytestmark = pytest.mark.django_db


@pytest.fixture
def limit(monkeypatch):
    """A limit other than the historical 4096: a surface with its own copy of the number fails below."""
    monkeypatch.setattr("tokens.credentials.SECRET_MAX_LENGTH", 50)
    return 50


def test_api_lookups_refuse_longer_secrets_unread(limit, django_assert_num_queries):
    with django_assert_num_queries(0):
        assert token_check(secret="x" * (limit + 1), now=timezone.now()).outcome is TokenCheck.INVALID
        assert token_by_secret(secret="x" * (limit + 1)) is None


def test_admin_search_field_and_input_use_the_limit(admin_client):
    assert token_admin.SecretSearchForm.base_fields["secret"].max_length == SECRET_MAX_LENGTH
    page = admin_client.get(reverse("admin:tokens_token_changelist"))
    assert f'maxlength="{SECRET_MAX_LENGTH}"' in page.content.decode()


def test_portal_verify_form_uses_the_limit():
    assert VerifyForm.base_fields["secret"].max_length == SECRET_MAX_LENGTH
    assert not VerifyForm({"secret": "x" * (SECRET_MAX_LENGTH + 1)}).is_valid()
