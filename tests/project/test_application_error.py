"""One application error type, mapped once per surface: the JSON API and the HTML pages (admin included)."""

import json

import pytest
from django import forms
from django.contrib.messages import get_messages
from django.contrib.messages.storage.fallback import FallbackStorage

from tokenmgr.api import api
from tokenmgr.errors import ApplicationError
from tokenmgr.pages import report_error


def test_json_api_answers_422_with_the_error_code(rf):
    response = api.on_exception(rf.get("/v2/x"), ApplicationError("Refusé.", code="refused"))
    assert response.status_code == 422
    assert json.loads(response.content)["errors"][0] | {"title": None} == {
        "code": "refused",
        "title": None,
        "detail": "Refusé.",
    }


class ReasonForm(forms.Form):
    reason = forms.CharField(required=False)


@pytest.mark.parametrize(("field", "where"), [("reason", "reason"), (None, "__all__"), ("other", "__all__")])
def test_html_form_error_on_the_field_at_fault(rf, field, where):
    form = ReasonForm({"reason": ""})
    form.is_valid()
    report_error(rf.post("/"), ApplicationError("Motif requis.", code="reason_required", field=field), form)
    assert form.errors == {where: ["Motif requis."]}


def test_html_message_without_form(rf):
    request = rf.post("/")
    request.session = {}
    request._messages = FallbackStorage(request)
    report_error(request, ApplicationError("Refusé.", code="refused"))
    assert [m.message for m in get_messages(request)] == ["Refusé."]
