"""The reminders' batch of pre-fill sources is the form's own rule, read in a bounded number of queries."""

import pytest
from django.db.models import Prefetch

from tests.factories import UserFactory, issue_token
from tokens.models import AccessRequest, Contact, Token
from tokens.prefill import renewal_prefill_source, renewal_prefill_sources

pytestmark = pytest.mark.django_db


def _tokens(count: int) -> list[Token]:
    ids = []
    for i in range(count):
        token = issue_token(label=f"Jeton {i}").token
        if i % 2:  # every other token was issued by a validated request
            AccessRequest.objects.create(
                client=token.client,
                applicant=UserFactory(),
                issued_token=token,
                state=AccessRequest.State.VALIDATED,
                project_description="Aides sociales",
                expected_volume=10,
            )
        ids.append(token.pk)
    return list(
        Token.objects.filter(pk__in=ids).prefetch_related(
            "privileges", Prefetch("contacts", queryset=Contact.objects.order_by("id"))
        )
    )


def test_the_batch_says_what_each_form_would_say():
    tokens = _tokens(6)
    batch = renewal_prefill_sources(tokens=tokens)
    for token in tokens:
        assert batch[token.pk] == renewal_prefill_source(token=token)
    assert sum(source.from_request for source in batch.values()) == 3


def test_the_batch_reads_the_same_number_of_queries_for_any_number_of_tokens(django_assert_max_num_queries):
    few, many = _tokens(2), _tokens(12)
    with django_assert_max_num_queries(2):
        renewal_prefill_sources(tokens=few)
    with django_assert_max_num_queries(2):
        renewal_prefill_sources(tokens=many)
