"""The client's IP address, the one identity every rate limit and login throttle keys on.

Behind reverse proxies the connecting address (REMOTE_ADDR) is a proxy's. settings.TRUSTED_PROXIES lists those
proxies (IPs or CIDR ranges); only when REMOTE_ADDR is one of them is X-Forwarded-For read, walking it from the
right (the entry our own proxy appended) and skipping every entry that is itself a trusted proxy: the first other
entry is the client. Entries further left were written by the client and are never believed. Without trusted
proxies, or from any other peer, X-Forwarded-For is ignored, so nobody changes their identity by sending it.

django-ipware (python-ipware) cannot express this rule: it reads X-Forwarded-For (and a dozen other headers)
whatever the connecting peer is, matches its trusted-proxy list by position (the last N hops must be the N listed
proxies, in order) rather than as a set of ranges, and without proxy configuration it picks the left-most *public*
address of the header, which the client writes. Hence this small function on the standard `ipaddress` module.
"""

import ipaddress
from functools import lru_cache

from django.conf import settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

UNKNOWN = "unknown"


def parse_trusted_proxies(text: str) -> tuple[Network, ...]:
    """Comma-separated IPs or CIDR ranges → networks; raises ValueError naming the first malformed entry.

    Every address-list setting uses it: TRUSTED_PROXIES, METRICS_ALLOWED_IPS."""
    networks = []
    for entry in (part.strip() for part in (text or "").split(",")):
        if not entry:
            continue
        try:
            network = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or a CIDR range (e.g. 10.0.0.0/8)") from None
        networks.append(_unmapped_network(network))
    return tuple(networks)


def _unmapped_network(network: Network) -> Network:
    """::ffff:10.0.0.0/104 is 10.0.0.0/8: an IPv4 proxy is matched the same way whatever the socket family."""
    if (
        isinstance(network, ipaddress.IPv6Network)
        and network.network_address.ipv4_mapped
        and network.prefixlen >= 96
    ):
        return ipaddress.ip_network(f"{network.network_address.ipv4_mapped}/{network.prefixlen - 96}")
    return network


def _parse_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address as found in REMOTE_ADDR or an X-Forwarded-For entry (with or without a port); None if invalid."""
    text = text.strip()
    if text.startswith("["):  # [2001:db8::1]:443
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:  # 203.0.113.9:443
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _within(address, networks: tuple[Network, ...]) -> bool:
    return address is not None and any(address in network for network in networks)


def address_in(text: str, networks: tuple[Network, ...]) -> bool:
    """Whether an address (as client_ip returns it, or REMOTE_ADDR) is in one of `networks`
    (from parse_trusted_proxies); False for 'unknown' or anything that is not an address."""
    return _within(_parse_address(text), networks)


class _Resolver:
    """The rule for one TRUSTED_PROXIES value. Results are cached per (REMOTE_ADDR, X-Forwarded-For): a busy API
    client sends the same pair again and again, so the hot path is one dictionary lookup."""

    def __init__(self, networks: tuple[Network, ...]) -> None:
        self.networks = networks
        self.client_ip = lru_cache(maxsize=8192)(self._client_ip)

    def _hop(self, text: str):
        """(address or None, whether it is a trusted proxy)."""
        address = _parse_address(text)
        return address, _within(address, self.networks)

    def _client_ip(self, remote_addr: str, forwarded_for: str) -> str:
        proxy, trusted = self._hop(remote_addr)
        if not trusted:
            return remote_addr
        client = proxy  # all hops trusted (or no header): the request comes from a proxy itself
        for entry in reversed(forwarded_for.split(",")):
            if not entry.strip():
                continue
            address, trusted = self._hop(entry)
            if trusted:
                client = address
                continue
            # Our last trusted proxy wrote this entry as its peer's address, so it is valid; if it is not, the
            # chain is broken and that proxy is the only identity we can vouch for.
            return str(address if address is not None else client)
        return str(client)


_resolver = _Resolver(())


def client_ip(request) -> str:
    """The client's IP address (see the module docstring); 'unknown' when the server gave no peer address."""
    remote_addr = request.META.get("REMOTE_ADDR") or UNKNOWN
    networks = settings.TRUSTED_PROXIES
    if not networks:
        return remote_addr
    global _resolver
    if _resolver.networks is not networks:  # settings replaced (tests): a new rule, a fresh cache
        _resolver = _Resolver(networks)
    return _resolver.client_ip(remote_addr, request.META.get("HTTP_X_FORWARDED_FOR", ""))
