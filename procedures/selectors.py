"""Reads for procedures: specs, the engine's catalog, application lists."""

from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Q, QuerySet

from procedures.engine.types import Catalog
from procedures.models import Application, Procedure, ProcedureVersion
from procedures.spec import ProcedureSpec, parse_spec
from staff import policy
from staff.models import StaffMembership


def version_spec_data(version: ProcedureVersion) -> dict:
    """The spec of a version as plain data: frozen for published versions, built from the rows for a draft."""
    if not version.is_draft and version.spec is not None:
        return version.spec
    procedure = version.procedure
    steps = version.steps.order_by("position", "id").prefetch_related("choices")
    return {
        "procedure_id": procedure.pk,
        "version_id": version.pk,
        "name": procedure.name,
        "description": procedure.description,
        "keywords": procedure.keyword_list,
        "receipt_prefix": procedure.receipt_prefix,
        "steps": [step.to_spec() for step in steps],
        "computed": [item.to_spec() for item in version.computed_values.order_by("position", "id")],
    }


def procedure_spec_get(version: ProcedureVersion) -> ProcedureSpec:
    return parse_spec(version_spec_data(version))


def catalog_build(*, pinned_version_ids=(), extra_specs: list[ProcedureSpec] = ()) -> Catalog:
    """The engine's view of what is open now, plus the versions running sessions are pinned to.

    `extra_specs` lets the simulator try a draft: it is added as an open procedure.
    """
    versions: dict[int, ProcedureSpec] = {}
    current: dict[int, int] = {}
    open_rows = Procedure.objects.filter(is_open=True, current_version__isnull=False).order_by().values_list(
        "pk", "current_version_id", "current_version__published_at"
    )
    wanted: dict[int, object] = {}
    for procedure_id, version_id, published_at in open_rows:
        current[procedure_id] = version_id
        wanted[version_id] = published_at
    missing = set(pinned_version_ids) - set(wanted)
    if missing:
        pinned = ProcedureVersion.objects.filter(
            pk__in=missing, status=ProcedureVersion.Status.PUBLISHED, procedure__is_open=True
        ).order_by()
        wanted.update(pinned.values_list("pk", "published_at"))
    versions.update(_published_specs(wanted))
    for spec in extra_specs:
        versions[spec.version_id] = spec
        current[spec.procedure_id] = spec.version_id
    return Catalog(versions=versions, current=current, idle_timeout=timedelta(hours=settings.SESSION_IDLE_HOURS))


# Published specs never change, so each is parsed once per process. The key includes the
# publish time so that a reused id (a restored or re-created database) never hits a stale entry.
_spec_cache: dict[tuple, ProcedureSpec] = {}


def _published_specs(wanted: dict) -> dict[int, ProcedureSpec]:
    """Specs for {version id: published_at}, reading the JSON only for versions not parsed yet."""
    found = {}
    uncached = []
    for version_id, published_at in wanted.items():
        spec = _spec_cache.get((version_id, published_at))
        if spec is None:
            uncached.append(version_id)
        else:
            found[version_id] = spec
    if uncached:
        rows = ProcedureVersion.objects.filter(pk__in=uncached).order_by().values_list("pk", "published_at", "spec")
        for version_id, published_at, data in rows:
            spec = parse_spec(data)
            _spec_cache[(version_id, published_at)] = spec
            found[version_id] = spec
    return found


def application_list(*, include_tests: bool = False) -> QuerySet[Application]:
    queryset = Application.objects.select_related("procedure", "version", "resident")
    if not include_tests:
        queryset = queryset.filter(is_test=False)
    return queryset


# --------------------------------------------------------------------------
# The staff inbox
# --------------------------------------------------------------------------


def staff_who_may_process(*, viewer) -> list:
    """Active staff accounts that may process some application the viewer can see (assignee choices)."""
    visible = list(policy.procedures_visible_to(viewer).order_by().values_list("department_id", "pk"))
    if not visible:
        return []
    processing_roles = [role for role, allowed in policy.ROLE_ACTIONS.items() if policy.PROCESS in allowed]
    candidates = (
        get_user_model()
        .objects.filter(is_active=True)
        .filter(
            Q(is_superuser=True)
            | Q(pk__in=StaffMembership.objects.filter(role__in=processing_roles).values("user_id"))
        )
        .order_by("username")
    )
    found = []
    for user in candidates:
        reach = policy.access(user, policy.PROCESS)
        if reach and any(reach.covers(department_id, procedure_id) for department_id, procedure_id in visible):
            found.append(user)
    return found


def resident_other_applications(*, application: Application, viewer) -> QuerySet[Application]:
    """The same resident's other applications that `viewer` may see, newest first."""
    if application.resident_id is not None:
        same_resident = Q(resident_id=application.resident_id)
    elif application.line_user_id:
        same_resident = Q(line_user_id=application.line_user_id)
    else:
        return Application.objects.none()
    visible = policy.applications_visible_to(viewer, action=policy.VIEW)
    if not application.is_test:
        visible = visible.filter(is_test=False)
    return (
        visible.filter(same_resident)
        .exclude(pk=application.pk)
        .select_related("procedure", "status")
        .order_by("-submitted_at", "-pk")
    )
