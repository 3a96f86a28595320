"""Who may read operator endpoints: /metrics, and /readyz beyond its summary.

A caller is an operator when its address is in ``PHOENIX_METRICS_ALLOWED_NETWORKS``
(Prometheus on the cluster network, a probe on the host), when it sends
``Authorization: Bearer <PHOENIX_METRICS_TOKEN>``, or when it is a signed-in staff
member. The address is the one the ASGI edge throttles by: the socket peer, or the last
entry of ``PHOENIX_CLIENT_IP_HEADER`` when a proxy sets it.
"""

from __future__ import annotations

import hmac
import ipaddress
from functools import lru_cache

from django.conf import settings
from django.http import HttpRequest


@lru_cache(maxsize=8)
def _networks(
    spec: tuple[str, ...],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(item.strip(), strict=False) for item in spec if item.strip())


def request_client_ip(request: HttpRequest) -> str:
    header = settings.PHOENIX_CLIENT_IP_HEADER
    if header:
        forwarded = request.headers.get(header)
        if forwarded:
            return forwarded.rsplit(",", 1)[-1].strip()
    return str(request.META.get("REMOTE_ADDR", ""))


def address_allowed(address: str) -> bool:
    """Whether ``address`` is in one of PHOENIX_METRICS_ALLOWED_NETWORKS."""
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return False
    return any(
        ip in network for network in _networks(tuple(settings.PHOENIX_METRICS_ALLOWED_NETWORKS))
    )


def token_presented(request: HttpRequest) -> bool:
    token = settings.PHOENIX_METRICS_TOKEN
    if not token:
        return False
    scheme, _, credential = (request.headers.get("Authorization") or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(credential.strip(), token)


def operator_request_allowed(request: HttpRequest) -> bool:
    """True for a caller from an allowed network, with the metrics token, or staff."""
    if token_presented(request) or address_allowed(request_client_ip(request)):
        return True
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_authenticated and user.is_staff)
