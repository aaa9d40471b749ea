"""The client address that login lockouts count per (django-axes' AXES_CLIENT_IP_CALLABLE)."""

from __future__ import annotations

import ipaddress

from django.conf import settings


def _address(raw: str) -> str | None:
    try:
        return str(ipaddress.ip_address(raw.strip()))
    except ValueError:
        return None


def client_ip(request) -> str | None:
    """REMOTE_ADDR; behind the city's reverse proxy, the address that proxy appended to X-Forwarded-For.

    Behind the proxy (DJANGO_BEHIND_PROXY, which sets SECURE_PROXY_SSL_HEADER) every request comes
    from the proxy's own address, so counting per REMOTE_ADDR would lock a user name out for the
    whole city. Only the last X-Forwarded-For entry is trusted: the proxy appends it, while the
    entries before it are whatever the client sent.
    """
    if settings.SECURE_PROXY_SSL_HEADER is not None:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded:
            last = _address(forwarded.split(",")[-1])
            if last is not None:
                return last
    return _address(request.META.get("REMOTE_ADDR") or "")
