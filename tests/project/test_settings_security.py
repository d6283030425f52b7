"""Production settings: development keys refused with DEBUG off, HTTPS hardening, CSP, `check --deploy` clean."""

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.test import Client

ROOT = Path(django_settings.BASE_DIR)
PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": secrets.token_urlsafe(50),
    "TOKEN_DIGEST_KEY": secrets.token_urlsafe(32),
    "SITE_URL": "https://tokenmgr.api.gouv.example",
    "ALLOWED_HOSTS": "tokenmgr.api.gouv.example",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
}
CLEARED = ("DEBUG", "SECRET_KEY", "TOKEN_DIGEST_KEY", "STAFF_2FA", "SITE_URL", "ALLOWED_HOSTS", "CACHE_URL")


def run(cmd: list[str], timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in CLEARED}
    return subprocess.run(
        cmd, cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=timeout, check=False
    )


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    return run([sys.executable, "manage.py", *args], **env)


def assert_one_line_refusal(result: subprocess.CompletedProcess, name: str) -> None:
    assert result.returncode != 0
    output = (result.stderr + result.stdout).strip()
    assert "Traceback" not in output
    lines = output.splitlines()
    assert len(lines) == 1, output
    assert name in lines[0]


# ------------------------------------------------------------------------------
# Keys
# ------------------------------------------------------------------------------
def test_debug_off_without_keys_stops_on_secret_key():
    assert_one_line_refusal(manage("check", DEBUG="0"), "SECRET_KEY")


def test_debug_off_without_digest_key_stops_on_it():
    result = manage("check", DEBUG="0", SECRET_KEY=PRODUCTION["SECRET_KEY"])
    assert_one_line_refusal(result, "TOKEN_DIGEST_KEY")


def test_debug_off_refuses_the_development_values_given_explicitly():
    source = (ROOT / "tokenmgr" / "settings.py").read_text()
    dev_key = re.search(r'_key\("SECRET_KEY", "([^"]+)"\)', source).group(1)
    dev_digest = re.search(r'_key\("TOKEN_DIGEST_KEY", "([^"]+)"\)', source).group(1)
    assert_one_line_refusal(manage("check", DEBUG="0", SECRET_KEY=dev_key), "SECRET_KEY")
    result = manage("check", DEBUG="0", SECRET_KEY="k" * 60, TOKEN_DIGEST_KEY=dev_digest)
    assert_one_line_refusal(result, "TOKEN_DIGEST_KEY")


def test_debug_off_with_both_keys_runs():
    result = manage("check", DEBUG="0", SECRET_KEY="k" * 60, TOKEN_DIGEST_KEY="d" * 40)
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_debug_on_needs_no_key():
    result = manage("check", DEBUG="1")
    assert result.returncode == 0, result.stderr


def test_web_server_and_worker_stop_at_start_up_without_keys():
    gunicorn = [
        str(Path(sys.executable).with_name("gunicorn")),
        "-c",
        "gunicorn.conf.py",
        "--bind",
        "127.0.0.1:0",
    ]
    assert_one_line_refusal(run(gunicorn, DEBUG="0", timeout=60), "SECRET_KEY")
    celery = [str(Path(sys.executable).with_name("celery")), "-A", "tokenmgr", "worker", "--pool", "solo"]
    assert_one_line_refusal(run(celery, DEBUG="0", timeout=60), "SECRET_KEY")


@pytest.mark.parametrize("value", ["maybe", "on", "1"])
def test_invalid_staff_2fa_stops_at_start_up(value):
    result = manage("check", DEBUG="0", SECRET_KEY="k" * 60, TOKEN_DIGEST_KEY="d" * 40, STAFF_2FA=value)
    assert_one_line_refusal(result, "STAFF_2FA")


def printed_settings(*names: str, **env: str) -> list[str]:
    code = f"from django.conf import settings; print(*[getattr(settings, n) for n in {names!r}], sep='|')"
    result = manage("shell", "-c", code, **env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1].split("|")


def test_staff_2fa_defaults():
    keys = {"SECRET_KEY": "k" * 60, "TOKEN_DIGEST_KEY": "d" * 40}
    assert printed_settings("STAFF_2FA", DEBUG="0", **keys) == ["required"]
    assert printed_settings("STAFF_2FA", DEBUG="1") == ["off"]
    assert printed_settings("STAFF_2FA", DEBUG="0", STAFF_2FA="off", **keys) == ["off"]
    assert printed_settings("STAFF_2FA", DEBUG="1", STAFF_2FA="Required", **keys) == ["required"]
    assert printed_settings("STAFF_2FA", DEBUG="0", STAFF_2FA="", **keys) == ["required"]  # empty = not set


# ------------------------------------------------------------------------------
# HTTPS
# ------------------------------------------------------------------------------
HTTPS_NAMES = ("SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS")


def test_https_site_gets_secure_cookies_hsts_and_redirect():
    assert printed_settings(*HTTPS_NAMES, **PRODUCTION) == ["True", "True", "True", str(365 * 24 * 3600)]
    plain = {**PRODUCTION, "SITE_URL": "http://127.0.0.1:8000", "ALLOWED_HOSTS": "127.0.0.1"}
    assert printed_settings(*HTTPS_NAMES, **plain) == ["False", "False", "False", "0"]


def test_check_deploy_is_clean_in_production():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (1 silenced)." in result.stdout  # security.W021, see settings


@pytest.fixture
def https_settings(settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    return settings


@pytest.mark.django_db
def test_behind_the_proxy(https_settings):
    client = Client()
    plain = client.get("/incidents/")
    assert plain.status_code == 301 and plain["Location"].startswith("https://")
    proxied = client.get("/connexion/", headers={"x-forwarded-proto": "https"})
    assert proxied.status_code == 200
    assert proxied["Strict-Transport-Security"].startswith("max-age=31536000")
    cookie = proxied.cookies[django_settings.CSRF_COOKIE_NAME]
    assert cookie["secure"] and cookie["samesite"] == "Lax"
    # Probes reach the app directly over plain HTTP.
    for probe in ("/healthz", "/readyz"):
        assert client.get(probe).status_code not in (301, 302, 307, 308)


# ------------------------------------------------------------------------------
# Content-Security-Policy
# ------------------------------------------------------------------------------
@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/connexion/", "/incidents/", "/real_time/", "/admin/login/", "/api/docs/"])
def test_every_html_page_has_a_csp_without_inline_scripts(client, url):
    response = client.get(url)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    directives = [part.split() for part in response["Content-Security-Policy"].split(";") if part.strip()]
    policy = {name: values for name, *values in directives}
    assert policy["default-src"] == ["'self'"]
    assert "'self'" in policy["script-src"]
    assert "'unsafe-inline'" not in policy["script-src"] and "'unsafe-eval'" not in policy["script-src"]
    assert policy["object-src"] == ["'none'"] and policy["frame-ancestors"] == ["'none'"]


@pytest.mark.django_db
def test_json_responses_skip_the_policy(client):
    """Only documents need it; building it costs every /v2/privileges call ~150 µs."""
    response = client.get("/api/openapi.json")
    assert response.status_code == 200 and response["Content-Type"].startswith("application/json")
    assert "Content-Security-Policy" not in response


INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>", re.I)
INLINE_HANDLER = re.compile(r"<[^>]*\son[a-z]+\s*=", re.I)
JS_URL = re.compile(r"javascript:", re.I)


def test_no_template_carries_inline_script():
    offenders = []
    for path in ROOT.rglob("*.html"):
        if {".venv", "var", "node_modules"} & set(path.relative_to(ROOT).parts):
            continue
        text = path.read_text()
        for pattern in (INLINE_SCRIPT, INLINE_HANDLER, JS_URL):
            offenders += [f"{path.relative_to(ROOT)}: {m.group(0)[:60]}" for m in pattern.finditer(text)]
    assert offenders == []


def test_inline_script_detector_catches_each_kind():
    assert INLINE_SCRIPT.search("<script>alert(1)</script>")
    assert not INLINE_SCRIPT.search('<script src="/static/x.js"></script>')
    assert INLINE_HANDLER.search('<input onfocus="this.select()">')
    assert not INLINE_HANDLER.search('<input data-select-on-focus class="fr-input">')
