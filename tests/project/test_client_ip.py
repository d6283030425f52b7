"""The client IP behind trusted proxies (tokenmgr/client_ip.py), and TRUSTED_PROXIES checked at start-up."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import RequestFactory

from tokenmgr.client_ip import client_ip, parse_trusted_proxies

ROOT = Path(__file__).resolve().parents[2]


def _ip(remote_addr: str | None, xff: str | None = None) -> str:
    request = RequestFactory().get("/")
    if remote_addr is None:
        del request.META["REMOTE_ADDR"]
    else:
        request.META["REMOTE_ADDR"] = remote_addr
    if xff is not None:
        request.META["HTTP_X_FORWARDED_FOR"] = xff
    return client_ip(request)


@pytest.fixture
def proxies(settings):
    def trust(text: str) -> None:
        settings.TRUSTED_PROXIES = parse_trusted_proxies(text)

    return trust


def test_without_trusted_proxies_the_header_is_ignored(settings):
    assert settings.TRUSTED_PROXIES == ()
    assert _ip("198.51.100.7", "203.0.113.9") == "198.51.100.7"
    assert _ip("198.51.100.7", "203.0.113.9, 10.0.0.1") == "198.51.100.7"
    assert _ip(None, "203.0.113.9") == "unknown"


def test_the_header_is_read_only_from_a_trusted_proxy(proxies):
    proxies("10.0.0.0/8")
    assert _ip("10.1.2.3", "203.0.113.9") == "203.0.113.9"
    assert (
        _ip("198.51.100.7", "203.0.113.9") == "198.51.100.7"
    )  # not a proxy: its header is its own invention


def test_the_client_is_the_right_most_untrusted_entry(proxies):
    proxies("10.0.0.0/8, 192.0.2.10")
    # The client wrote "1.2.3.4" itself; our proxies appended the rest.
    assert _ip("10.0.0.5", "1.2.3.4, 203.0.113.9") == "203.0.113.9"
    assert _ip("10.0.0.5", "1.2.3.4, 203.0.113.9, 192.0.2.10, 10.9.9.9") == "203.0.113.9"
    assert _ip("192.0.2.10", "  203.0.113.9 ,10.0.0.7") == "203.0.113.9"
    # Several X-Forwarded-For headers arrive joined by commas.
    assert _ip("10.0.0.5", "1.2.3.4,203.0.113.9") == "203.0.113.9"


def test_entries_with_ports_brackets_and_ipv6(proxies):
    proxies("10.0.0.0/8, 2001:db8:ffff::/48")
    assert _ip("10.0.0.5", "203.0.113.9:51234") == "203.0.113.9"
    assert _ip("10.0.0.5", "[2001:DB8::1]:443") == "2001:db8::1"
    assert _ip("2001:db8:ffff::2", "2001:db8::abcd") == "2001:db8::abcd"
    assert _ip("::ffff:10.0.0.5", "203.0.113.9") == "203.0.113.9"  # IPv4-mapped proxy address
    assert _ip("10.0.0.5", "::ffff:203.0.113.9") == "203.0.113.9"


def test_a_request_from_the_proxy_itself_or_a_broken_chain_is_the_proxy(proxies):
    proxies("10.0.0.0/8")
    assert _ip("10.0.0.5") == "10.0.0.5"
    assert _ip("10.0.0.5", "") == "10.0.0.5"
    assert _ip("10.0.0.5", "10.0.0.9") == "10.0.0.9"
    # The entry our proxy wrote is not an address: we can vouch for nothing beyond that proxy.
    assert _ip("10.0.0.5", "1.2.3.4, garbage") == "10.0.0.5"
    assert _ip("10.0.0.5", "1.2.3.4, garbage, 10.0.0.9") == "10.0.0.9"


def test_settings_parse_ips_and_ranges():
    assert [str(n) for n in parse_trusted_proxies(" 10.0.0.1 , 172.16.0.0/12,,2001:db8::/32 ")] == [
        "10.0.0.1/32",
        "172.16.0.0/12",
        "2001:db8::/32",
    ]
    assert parse_trusted_proxies("") == ()
    assert [str(n) for n in parse_trusted_proxies("::ffff:10.0.0.0/104")] == ["10.0.0.0/8"]
    for bad in ["10.0.0.0/33", "proxy.example", "10.0.0.1-10.0.0.9", "300.1.1.1"]:
        with pytest.raises(ValueError, match="not an IP address or a CIDR range"):
            parse_trusted_proxies(f"10.0.0.1,{bad}")


def test_a_malformed_setting_stops_start_up_with_one_line():
    env = {**os.environ, "TRUSTED_PROXIES": "10.0.0.0/8,10.0.0.300", "DEBUG": "1"}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert result.stderr.strip() == (
        "TRUSTED_PROXIES: '10.0.0.300' is not an IP address or a CIDR range (e.g. 10.0.0.0/8)"
    )
    ok = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**env, "TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
