"""A small city for access tests: two departments, procedures in each and one without, every role.

Department A ("dept-a") holds the procedure granted to the outsourced operator (A_GRANTED) and
another one (A_OTHER); department B holds B; NONE has no department. Each place has a published
version plus a draft (with a marker step), an application from its own resident, an audit
entry and a segment. Every name that a page could show is unique, so a test can look for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.contrib.auth import get_user_model

from audit.models import AuditEntry
from procedures.models import Application, Procedure, ProcedureVersion, Step
from procedures.services import draft_get_or_create
from procedures.tests.factories import (
    ApplicationFactory,
    DepartmentFactory,
    ProcedureFactory,
    ProcedureVersionFactory,
    ShortTextStepFactory,
    published_version,
    valid_draft,
)
from residents.models import Resident, Segment
from staff.models import Department, ProcedureGrant, Role, StaffMembership

# Where an object lives, as seen from the staff of department A.
A_GRANTED = "A_granted"  # department A, granted to the outsourced operator
A_OTHER = "A_other"  # department A, not granted
B = "B"  # another department
NONE = "none"  # no department (city-wide)
PLACES = (A_GRANTED, A_OTHER, B, NONE)

ROLES = (
    "superuser",
    "system_admin",
    "department_staff",
    "department_viewer",
    "outsourced_operator",
    "auditor",
    "auditor_citywide",
    "no_role",
)

PREFIXES = {A_GRANTED: "WAG", A_OTHER: "WAO", B: "WBB", NONE: "WNN"}


def marker(kind: str, place: str) -> str:
    """The unique text an object of `kind` in `place` shows (name, label, receipt number…)."""
    return f"mk-{kind}-{place}".replace("_", "-")


@dataclass
class Place:
    procedure: Procedure
    published: ProcedureVersion
    draft: ProcedureVersion
    step: Step
    application: Application
    resident: Resident
    audit_entry: AuditEntry
    unpublished: Procedure  # never published: the admin lets it be deleted
    segment: Segment


@dataclass
class World:
    department_a: Department
    department_b: Department
    places: dict[str, Place]
    users: dict[str, object] = field(default_factory=dict)
    resident_without_applications: Resident | None = None

    def __getitem__(self, place: str) -> Place:
        return self.places[place]


def _place(place: str, department: Department | None) -> Place:
    prefix = PREFIXES[place]
    published = published_version(
        valid_draft(
            ProcedureVersionFactory(
                procedure=ProcedureFactory(name=marker("procedure", place), receipt_prefix=prefix, department=department)
            )
        )
    )
    procedure = Procedure.objects.get(pk=published.procedure_id)
    draft = draft_get_or_create(procedure=procedure)
    step = ShortTextStepFactory(version=draft, key="marker", label=marker("step", place), position=1)
    resident = Resident.objects.create(line_user_id=marker("resident", place), display_name=marker("resident-name", place))
    application = ApplicationFactory(
        version=published,
        procedure=procedure,
        receipt_number=marker("receipt", place),
        resident=resident,
        line_user_id=resident.line_user_id,
        answers={"item": "tansu", "count": 1, "name": "市役所 太郎"},
    )
    audit_entry = AuditEntry.objects.create(
        actor_display=marker("audit", place),
        action="test.marker",
        object_type="procedures.procedure",
        object_id=str(procedure.pk),
        department=department,
    )
    unpublished = ProcedureFactory(
        name=marker("unpublished", place), receipt_prefix=prefix + "U", department=department
    )
    ProcedureVersionFactory(procedure=unpublished)
    segment = Segment.objects.create(name=marker("segment", place), department=department, rules={"match": "all", "rules": []})
    return Place(procedure, published, draft, step, application, resident, audit_entry, unpublished, segment)


def _user(username: str, **flags):
    user = get_user_model().objects.create_user(username=username, password=None, is_staff=True, **flags)
    return user


def build_world() -> World:
    department_a = DepartmentFactory(name="部署A", code="dept-a")
    department_b = DepartmentFactory(name="部署B", code="dept-b")
    places = {
        A_GRANTED: _place(A_GRANTED, department_a),
        A_OTHER: _place(A_OTHER, department_a),
        B: _place(B, department_b),
        NONE: _place(NONE, None),
    }
    world = World(department_a, department_b, places)
    world.resident_without_applications = Resident.objects.create(line_user_id=marker("resident", "alone"))

    users = world.users
    users["superuser"] = _user("superuser", is_superuser=True)
    for name in ROLES[1:]:
        users[name] = _user(name)
    memberships = [
        ("system_admin", Role.SYSTEM_ADMIN, None),
        ("department_staff", Role.DEPARTMENT_STAFF, department_a),
        ("department_viewer", Role.DEPARTMENT_VIEWER, department_a),
        ("outsourced_operator", Role.OUTSOURCED_OPERATOR, None),
        ("auditor", Role.AUDITOR, department_a),
        ("auditor_citywide", Role.AUDITOR, None),
    ]
    for name, role, department in memberships:
        StaffMembership.objects.create(user=users[name], role=role, department=department)
    ProcedureGrant.objects.create(user=users["outsourced_operator"], procedure=places[A_GRANTED].procedure)
    return world


def world_fixture(django_db_setup, django_db_blocker):
    """Module-scoped: the world is built once per test module inside a transaction rolled back at its end;
    each test still runs in its own savepoint (pytest-django), so what a test changes is undone after it."""
    from django.db import transaction

    with django_db_blocker.unblock():
        with transaction.atomic():
            yield build_world()
            transaction.set_rollback(True)
