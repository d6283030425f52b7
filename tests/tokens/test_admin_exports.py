"""CSV exports of the admin: formula cells neutralised, plain and French-Excel dialects."""

import csv
import datetime as dt
import decimal
import io
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.urls import reverse

from tests.factories import ClientFactory, issue_token
from tokens import exports

PARIS = ZoneInfo("Europe/Paris")
NOW = dt.datetime(2026, 3, 10, 11, 0, tzinfo=PARIS)
CHANGELIST = reverse("admin:tokens_token_changelist")
DANGEROUS = ["=1+2", "+33 6 00 00 00 00", "-2+3", "@SUM(A1)", "\tindent", "\rreturn"]


@pytest.mark.parametrize("text", DANGEROUS)
def test_each_formula_prefix_is_neutralised(text):
    assert exports.neutralise_cell(text) == "'" + text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Portail RH", "Portail RH"),
        ("a=b", "a=b"),  # only the first character matters
        ("", ""),
        (None, ""),
        (-3, -3),  # typed as a number: kept, the spreadsheet reads a negative number
        (-2.5, -2.5),
        (decimal.Decimal("-1.50"), decimal.Decimal("-1.50")),
        ("-3", "'-3"),  # the same characters as text: neutralised
        (True, "True"),
    ],
)
def test_safe_values_and_numbers(value, expected):
    assert exports.neutralise_cell(value) == expected


def test_csv_lines_neutralise_header_and_every_row():
    lines = list(exports.csv_lines(["=h", "ok"], [["@x", 4], ["-1", -1]], exports.PLAIN))
    assert lines == ["'=h,ok\r\n", "'@x,4\r\n", "'-1,-1\r\n"]


@pytest.fixture
def hostile_tokens(db):
    with time_machine.travel(NOW, tick=False):
        client = ClientFactory(name="=cmd|' /C calc'!A0")
        for label in DANGEROUS:
            issue_token(client=client, label=label)
        # Expired 10 days ago: its days left are a negative number.
        expired = issue_token(label="expiré", issued_at=dt.datetime(2024, 8, 31, 10, 0, tzinfo=PARIS))
        yield {"client": client, "expired": expired}


def _export(admin_client, action):
    from tokens.models import Token

    response = admin_client.post(
        CHANGELIST,
        {
            "action": action,
            "_selected_action": list(Token.objects.values_list("pk", flat=True)),
            "index": "0",
        },
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    return response, b"".join(response.streaming_content)


@pytest.mark.parametrize(
    ("action", "delimiter", "bom", "suffix"),
    [("export_csv", ",", False, ".csv"), ("export_csv_excel", ";", True, "-excel.csv")],
)
def test_token_export_in_both_dialects(admin_client, hostile_tokens, action, delimiter, bom, suffix):
    with time_machine.travel(NOW, tick=False):
        response, raw = _export(admin_client, action)
    assert raw.startswith(b"\xef\xbb\xbf") is bom
    assert response["Content-Disposition"].endswith(f'{suffix}"')
    text = raw.decode("utf-8-sig")
    assert text.count("\r\n") == len(DANGEROUS) + 2  # header + 7 rows, each ending with CRLF
    assert "\n" not in text.replace("\r\n", "")  # no bare LF: the \r of a label is inside a quoted cell
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    assert rows[0][:3] == ["identifiant public", "client", "SIRET"]
    by_label = {r[3]: r for r in rows[1:]}
    # Labels typed by people come out inert; the client's name too.
    assert set(by_label) == {"'" + label for label in DANGEROUS} | {"expiré"}
    for label in DANGEROUS:
        assert by_label["'" + label][1] == "'=cmd|' /C calc'!A0"
    # A number stays a number, even negative.
    assert by_label["expiré"][9] == "-10"
    assert by_label["expiré"][10] == "expired"
    for row in rows[1:]:
        assert not row[0].startswith(("=", "+", "-", "@", "\t", "\r"))


def test_export_needs_the_view_permission(client, hostile_tokens, django_user_model):
    staff = django_user_model.objects.create_user("staff", "staff@example.org", "x", is_staff=True)
    client.force_login(staff)
    response = client.post(CHANGELIST, {"action": "export_csv", "_selected_action": [1], "index": "0"})
    assert response.status_code == 403
