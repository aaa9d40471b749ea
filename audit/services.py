"""Writes to the audit log. Every entry goes through audit_record()."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator

from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import QuerySet

from audit import actions
from audit.exports import entries_csv
from audit.models import AuditEntry

# Details carry ids, counts and filters. These keys would mean someone is about to log what a
# resident typed, or a credential: refused wherever they appear.
FORBIDDEN_DETAIL_KEYS = frozenset({"answers", "answer", "computed", "password", "passwd", "secret", "token"})
MAX_DETAIL_STRING = 200
MAX_DETAILS_JSON = 10_000
MAX_USER_AGENT = 300
MAX_ACTOR_DISPLAY = 200


class AuditDetailsRefused(ValueError):
    """Details that could hold personal data or secrets (a programming error, never shown to users)."""


def _check_details(value, depth: int = 0, path: str = "details") -> None:
    if depth > 4:
        raise AuditDetailsRefused(f"{path}: nested too deeply")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise AuditDetailsRefused(f"{path}: keys must be strings")
            if key.lower() in FORBIDDEN_DETAIL_KEYS:
                raise AuditDetailsRefused(f"{path}.{key}: answers and credentials never go into the audit log")
            _check_details(item, depth + 1, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_details(item, depth + 1, f"{path}[{index}]")
    elif isinstance(value, str):
        if len(value) > MAX_DETAIL_STRING:
            raise AuditDetailsRefused(f"{path}: strings longer than {MAX_DETAIL_STRING} characters are refused")
    elif value is not None and not isinstance(value, bool | int | float):
        raise AuditDetailsRefused(f"{path}: only ids, counts, flags and short codes are recorded")


def _clean_details(details) -> dict:
    if details is None:
        return {}
    if not isinstance(details, dict):
        raise AuditDetailsRefused("details must be a dict")
    _check_details(details)
    data = json.loads(json.dumps(details, cls=DjangoJSONEncoder))
    if len(json.dumps(data, ensure_ascii=False)) > MAX_DETAILS_JSON:
        raise AuditDetailsRefused("details are too large")
    return data


def request_ip(request) -> str | None:
    """The peer address of the request (X-Forwarded-For is not trusted here)."""
    if request is None:
        return None
    raw = (request.META.get("REMOTE_ADDR") or "").strip()
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        return None


def _user_agent(request) -> str:
    if request is None:
        return ""
    return str(request.META.get("HTTP_USER_AGENT") or "")[:MAX_USER_AGENT]


def _actor(actor):
    if actor is None or not getattr(actor, "is_authenticated", False) or getattr(actor, "pk", None) is None:
        return None
    return actor


@transaction.atomic
def audit_record(
    *,
    actor,
    action: str,
    obj=None,
    department=None,
    details: dict | None = None,
    request=None,
    actor_display: str | None = None,
) -> AuditEntry:
    """Append one entry. `department` defaults to the object's department (staff.policy.department_id_of).

    `actor_display` overrides the recorded name (a failed login records the name that was tried).
    """
    from staff.policy import department_id_of  # staff.policy reads audit.models: imported late

    user = _actor(actor)
    if actor_display is None:
        actor_display = user.get_username() if user is not None else ""
    if department is None and obj is not None:
        department = department_id_of(obj)
    entry = AuditEntry(
        actor=user,
        actor_display=str(actor_display)[:MAX_ACTOR_DISPLAY],
        action=action,
        object_type=obj._meta.label_lower if obj is not None else "",
        object_id=str(obj.pk) if obj is not None and obj.pk is not None else "",
        department_id=getattr(department, "pk", department),
        details=_clean_details(details),
        ip=request_ip(request),
        user_agent=_user_agent(request),
    )
    entry.save()
    return entry


def audit_export(*, actor, entries: QuerySet[AuditEntry], filters: dict, request=None) -> Iterator[str]:
    """The CSV of `entries` (already scoped and filtered by the caller); the export itself is recorded first."""
    count = entries.count()
    audit_record(
        actor=actor,
        action=actions.AUDIT_EXPORT,
        details={"filters": filters, "count": count},
        request=request,
    )
    return entries_csv(entries)
