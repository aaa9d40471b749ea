"""Reads for procedures: specs, the engine's catalog, application lists."""

from datetime import timedelta

from django.conf import settings
from django.db.models import QuerySet

from procedures.engine.types import Catalog
from procedures.models import Application, Procedure, ProcedureVersion
from procedures.spec import ProcedureSpec, parse_spec


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
    open_procedures = Procedure.objects.filter(is_open=True, current_version__isnull=False).select_related(
        "current_version"
    )
    for procedure in open_procedures:
        version = procedure.current_version
        versions[version.pk] = _published_spec(version)
        current[procedure.pk] = version.pk
    missing = set(pinned_version_ids) - set(versions)
    if missing:
        pinned = ProcedureVersion.objects.filter(
            pk__in=missing, status=ProcedureVersion.Status.PUBLISHED, procedure__is_open=True
        )
        for version in pinned:
            versions[version.pk] = _published_spec(version)
    for spec in extra_specs:
        versions[spec.version_id] = spec
        current[spec.procedure_id] = spec.version_id
    return Catalog(versions=versions, current=current, idle_timeout=timedelta(hours=settings.SESSION_IDLE_HOURS))


_spec_cache: dict[int, ProcedureSpec] = {}


def _published_spec(version: ProcedureVersion) -> ProcedureSpec:
    # Published specs never change, so parsing each one once per process is safe.
    spec = _spec_cache.get(version.pk)
    if spec is None:
        spec = parse_spec(version.spec)
        _spec_cache[version.pk] = spec
    return spec


def application_list(*, include_tests: bool = False) -> QuerySet[Application]:
    queryset = Application.objects.select_related("procedure", "version", "resident")
    if not include_tests:
        queryset = queryset.filter(is_test=False)
    return queryset
