from pathlib import Path

import dsfr
import pytest

pytestmark = pytest.mark.django_db


def test_favicon_is_the_dsfr_icon_without_login(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/x-icon"
    assert "max-age=86400" in response["Cache-Control"]
    shipped = Path(dsfr.__file__).parent / "static/dsfr/dist/favicon/favicon.ico"
    assert b"".join(response.streaming_content) == shipped.read_bytes()
    assert client.post("/favicon.ico").status_code == 405


def test_pages_link_the_icon(client):
    body = client.get("/connexion/").content.decode()
    assert 'rel="icon"' in body and "dsfr/dist/favicon/favicon.ico" in body
