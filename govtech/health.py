"""Health checks for the deployment (docker-compose.yml).

`health` is the /healthz view: 200 {"status": "ok"} when the database answers
a `SELECT 1`, 503 otherwise. It says nothing more, since anyone can call it.

Run as a module, this file is also the containers' healthcheck probe:

    python -m govtech.health web      # GET /healthz on the local gunicorn
    python -m govtech.health worker   # this host's django-q2 cluster reports in

The web probe sends a Host header from DJANGO_ALLOWED_HOSTS and, behind a
proxy, X-Forwarded-Proto: https, so neither host validation nor the HTTPS
redirect turns the probe into a false alarm.
"""

from __future__ import annotations

import logging
import os
import sys

from django.db import DatabaseError, connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

logger = logging.getLogger(__name__)


@never_cache
@require_safe
def health(request):
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        logger.warning("Health check: the database does not answer: %s", exc)
        return JsonResponse({"status": "unavailable"}, status=503)
    return JsonResponse({"status": "ok"})


# --------------------------------------------------------------------------
# Probes for the container healthchecks.
# --------------------------------------------------------------------------


def probe_host(allowed_hosts: str) -> str:
    """A Host header that passes ALLOWED_HOSTS: its first concrete entry."""
    for entry in allowed_hosts.split(","):
        host = entry.strip().lstrip(".")
        if host and host != "*":
            return host
    return "localhost"


def probe_web(url: str | None = None, timeout: float = 5) -> bool:
    import urllib.error
    import urllib.request

    url = url or os.environ.get("HEALTHCHECK_URL", "http://127.0.0.1:8000/healthz")
    headers = {"Host": probe_host(os.environ.get("DJANGO_ALLOWED_HOSTS", ""))}
    headers["X-Forwarded-Proto"] = "https"
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - a fixed local http URL
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - the fixed local http URL above  # nosec B310
            return response.status == 200
    except (urllib.error.URLError, OSError) as exc:
        print(f"web unhealthy: {exc}", file=sys.stderr)
        return False


def probe_worker() -> bool:
    import socket

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "govtech.settings")
    django.setup()
    from django_q.status import Stat

    hostname = socket.gethostname()
    alive = [stat for stat in Stat.get_all() if stat.host == hostname]
    if not alive:
        print(f"worker unhealthy: no django-q2 cluster reports in from {hostname}", file=sys.stderr)
    return bool(alive)


def main(argv: list[str]) -> int:
    probes = {"web": probe_web, "worker": probe_worker}
    if len(argv) != 1 or argv[0] not in probes:
        print("usage: python -m govtech.health web|worker", file=sys.stderr)
        return 2
    return 0 if probes[argv[0]]() else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
