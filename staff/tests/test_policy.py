"""staff/policy.py against an explicit table of who may do what where, plus roles, grants and their services.

The table below is written from the requirements (issue 5, requirement 1), not computed from
the policy: a change to the policy that disagrees with it fails here.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.urls import reverse

from audit.models import AuditEntry
from procedures.models import Application, ComputedValue, Procedure, ProcedureVersion, Step, StepChoice
from residents.models import Resident, Segment
from staff import policy, services
from staff.models import ProcedureGrant, Role, StaffMembership
from staff.tests.world import A_OTHER, PLACES, ROLES, B, world_fixture

world = pytest.fixture(scope="module", name="world")(world_fixture)

ACTIONS = ("view", "change", "build", "process", "export", "reveal_sensitive", "view_audit")
LETTERS = "VCBPERA"  # one letter per action above, in that order; "." = denied
OBJECT_TYPES = ("procedure", "version", "step", "application", "resident", "audit_entry", "segment")

# role, object type: allowed actions on the object in A_granted, A_other, B, none (see staff/tests/world.py).
# A resident "is in" the place of the procedure they applied to; an audit entry in its department.
# A segment without a department is city-wide: staff of every department view it (and send to it).
TABLE = """
superuser            procedure    VCBPERA VCBPERA VCBPERA VCBPERA
superuser            version      VCBPERA VCBPERA VCBPERA VCBPERA
superuser            step         VCBPERA VCBPERA VCBPERA VCBPERA
superuser            application  VCBPERA VCBPERA VCBPERA VCBPERA
superuser            resident     VCBPERA VCBPERA VCBPERA VCBPERA
superuser            audit_entry  V...E.A V...E.A V...E.A V...E.A
superuser            segment      VCBPERA VCBPERA VCBPERA VCBPERA
system_admin         procedure    VCBPERA VCBPERA VCBPERA VCBPERA
system_admin         version      VCBPERA VCBPERA VCBPERA VCBPERA
system_admin         step         VCBPERA VCBPERA VCBPERA VCBPERA
system_admin         application  VCBPERA VCBPERA VCBPERA VCBPERA
system_admin         resident     VCBPERA VCBPERA VCBPERA VCBPERA
system_admin         audit_entry  V...E.A V...E.A V...E.A V...E.A
system_admin         segment      VCBPERA VCBPERA VCBPERA VCBPERA
department_staff     procedure    VCBPER. VCBPER. ....... .......
department_staff     version      VCBPER. VCBPER. ....... .......
department_staff     step         VCBPER. VCBPER. ....... .......
department_staff     application  VCBPER. VCBPER. ....... .......
department_staff     resident     V...... V...... ....... .......
department_staff     audit_entry  ....... ....... ....... .......
department_staff     segment      VCBPER. VCBPER. ....... V......
department_viewer    procedure    V...... V...... ....... .......
department_viewer    version      V...... V...... ....... .......
department_viewer    step         V...... V...... ....... .......
department_viewer    application  V...... V...... ....... .......
department_viewer    resident     V...... V...... ....... .......
department_viewer    audit_entry  ....... ....... ....... .......
department_viewer    segment      V...... V...... ....... V......
outsourced_operator  procedure    V..P.R. ....... ....... .......
outsourced_operator  version      V..P.R. ....... ....... .......
outsourced_operator  step         V..P.R. ....... ....... .......
outsourced_operator  application  V..P.R. ....... ....... .......
outsourced_operator  resident     V...... ....... ....... .......
outsourced_operator  audit_entry  ....... ....... ....... .......
outsourced_operator  segment      ....... ....... ....... .......
auditor              procedure    V...ERA V...ERA ....... .......
auditor              version      V...ERA V...ERA ....... .......
auditor              step         V...ERA V...ERA ....... .......
auditor              application  V...ERA V...ERA ....... .......
auditor              resident     V...... V...... ....... .......
auditor              audit_entry  V...E.A V...E.A ....... .......
auditor              segment      V...ERA V...ERA ....... V......
auditor_citywide     procedure    V...ERA V...ERA V...ERA V...ERA
auditor_citywide     version      V...ERA V...ERA V...ERA V...ERA
auditor_citywide     step         V...ERA V...ERA V...ERA V...ERA
auditor_citywide     application  V...ERA V...ERA V...ERA V...ERA
auditor_citywide     resident     V...... V...... V...... V......
auditor_citywide     audit_entry  V...E.A V...E.A V...E.A V...E.A
auditor_citywide     segment      V...ERA V...ERA V...ERA V...ERA
no_role              procedure    ....... ....... ....... .......
no_role              version      ....... ....... ....... .......
no_role              step         ....... ....... ....... .......
no_role              application  ....... ....... ....... .......
no_role              resident     ....... ....... ....... .......
no_role              audit_entry  ....... ....... ....... .......
no_role              segment      ....... ....... ....... .......
"""


def _parse(table: str) -> dict[tuple[str, str], dict[str, str]]:
    rows = {}
    for line in table.strip().splitlines():
        role, object_type, *cells = line.split()
        assert len(cells) == len(PLACES) and all(len(cell) == len(ACTIONS) for cell in cells), line
        rows[(role, object_type)] = dict(zip(PLACES, cells, strict=True))
    return rows


EXPECTED = _parse(TABLE)


def test_the_table_covers_every_role_and_object_type():
    assert set(EXPECTED) == {(role, object_type) for role in ROLES for object_type in OBJECT_TYPES}


def _allowed(role: str, object_type: str, action: str, place: str) -> bool:
    letter = EXPECTED[(role, object_type)][place][ACTIONS.index(action)]
    assert letter in (LETTERS[ACTIONS.index(action)], ".")
    return letter != "."


def _object(world, object_type: str, place: str):
    where = world[place]
    return {
        "procedure": where.procedure,
        "version": where.draft,
        "step": where.step,
        "application": where.application,
        "resident": where.resident,
        "audit_entry": where.audit_entry,
        "segment": where.segment,
    }[object_type]


MODELS = {
    "procedure": Procedure,
    "version": ProcedureVersion,
    "step": Step,
    "application": Application,
    "resident": Resident,
    "audit_entry": AuditEntry,
    "segment": Segment,
}


@pytest.mark.django_db
@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("object_type", OBJECT_TYPES)
@pytest.mark.parametrize("role", ROLES)
def test_policy_matrix(world, role, object_type, action):
    user = world.users[role]
    model = MODELS[object_type]
    expected = {place: _allowed(role, object_type, action, place) for place in PLACES}
    # The object check, by the object itself.
    assert {place: policy.can(user, action, _object(world, object_type, place)) for place in PLACES} == expected
    # The queryset check: the same objects, found by the scoped queryset (ids guessed across departments included).
    ids = {place: _object(world, object_type, place).pk for place in PLACES}
    scoped = set(policy.scope(user, action, model.objects.filter(pk__in=ids.values())).values_list("pk", flat=True))
    assert {place: ids[place] in scoped for place in PLACES} == expected
    # The model check ("anywhere?") follows: allowed somewhere in the table means allowed for the model.
    assert policy.can(user, action, model) == any(expected.values())


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_named_querysets_agree_with_the_table(world, role):
    user = world.users[role]

    def places(queryset, object_type):
        found = set(queryset.values_list("pk", flat=True))
        return {place for place in PLACES if _object(world, object_type, place).pk in found}

    def table(object_type, action):
        return {place for place in PLACES if _allowed(role, object_type, action, place)}

    assert places(policy.procedures_visible_to(user), "procedure") == table("procedure", "view")
    assert places(policy.versions_visible_to(user), "version") == table("version", "view")
    for action in ("view", "process", "export", "reveal_sensitive"):
        assert places(policy.applications_visible_to(user, action=action), "application") == table("application", action)
    assert places(policy.residents_visible_to(user), "resident") == table("resident", "view")
    assert places(policy.audit_entries_visible_to(user), "audit_entry") == table("audit_entry", "view_audit")
    assert places(policy.audit_entries_visible_to(user, action="export"), "audit_entry") == table("audit_entry", "export")


@pytest.mark.django_db
def test_a_resident_without_applications_is_seen_by_city_wide_roles_only(world):
    alone = world.resident_without_applications
    seen = {role for role in ROLES if policy.can(world.users[role], "view", alone)}
    assert seen == {"superuser", "system_admin", "auditor_citywide"}


@pytest.mark.django_db
def test_choices_and_computed_values_follow_their_step_and_version(world):
    staff, viewer = world.users["department_staff"], world.users["department_viewer"]
    for place, allowed in ((A_OTHER, True), (B, False)):
        draft = world[place].draft
        choice = StepChoice.objects.filter(step__version=draft).first()
        computed = ComputedValue.objects.filter(version=draft).first()
        assert choice is not None and computed is not None
        for obj in (choice, computed):
            assert policy.can(staff, "build", obj) is allowed
            assert policy.can(viewer, "view", obj) is allowed
            assert policy.can(viewer, "build", obj) is False


@pytest.mark.django_db
def test_departments_for_building(world):
    assert set(policy.departments_for(world.users["department_staff"], "build")) == {world.department_a}
    assert set(policy.departments_for(world.users["department_viewer"], "build")) == set()
    assert set(policy.departments_for(world.users["outsourced_operator"], "build")) == set()
    assert {world.department_a, world.department_b} <= set(policy.departments_for(world.users["system_admin"], "build"))


@pytest.mark.django_db
def test_roles_and_system_admin(world):
    assert policy.is_system_admin(world.users["superuser"])
    assert policy.is_system_admin(world.users["system_admin"])
    assert not policy.is_system_admin(world.users["department_staff"])
    assert policy.roles(world.users["auditor"]) == {"auditor"}
    assert policy.roles(world.users["no_role"]) == set()


@pytest.mark.django_db
def test_administering_staff_is_for_system_admins_only(world):
    for role in ROLES:
        user = world.users[role]
        expected = role in ("superuser", "system_admin")
        for target in (StaffMembership, ProcedureGrant, get_user_model(), world.department_a, world.users["no_role"]):
            assert policy.can(user, "administer", target) is expected, (role, target)
            assert policy.admin_permission(user, "view", type(target) if not isinstance(target, type) else target) is expected


@pytest.mark.django_db
def test_admin_permissions_map_to_actions(world):
    staff, auditor = world.users["department_staff"], world.users["auditor"]
    application = world[A_OTHER].application
    assert policy.admin_permission(staff, "view", Application, application)
    assert policy.admin_permission(staff, "change", Application, application)  # process
    assert not policy.admin_permission(staff, "delete", Application, application)  # administer
    assert not policy.admin_permission(auditor, "change", Application, application)
    entry = world[A_OTHER].audit_entry
    assert policy.admin_permission(auditor, "view", AuditEntry, entry)
    for permission in ("add", "change", "delete"):
        assert not policy.admin_permission(world.users["superuser"], permission, AuditEntry, entry)
        assert not policy.admin_permission(world.users["superuser"], permission, AuditEntry)


def test_unknown_actions_are_refused():
    with pytest.raises(ValueError):
        policy.can(None, "delete_everything", Procedure)
    with pytest.raises(ValueError):
        policy.access(None, "viewing")


# --------------------------------------------------------------------------
# Accounts that do not count
# --------------------------------------------------------------------------


@pytest.mark.django_db
def test_inactive_or_non_staff_accounts_have_no_access(world):
    procedure = world[A_OTHER].procedure
    staff = world.users["department_staff"]
    assert policy.can(staff, "view", procedure)
    staff.is_active = False
    policy.forget(staff)
    assert not policy.can(staff, "view", procedure)
    assert not policy.procedures_visible_to(staff).exists()
    staff.is_active, staff.is_staff = True, False
    policy.forget(staff)
    assert not policy.can(staff, "view", procedure)
    staff.is_staff = True
    policy.forget(staff)
    assert policy.can(staff, "view", procedure)

    superuser = world.users["superuser"]
    superuser.is_active = False
    assert not policy.can(superuser, "view", procedure)
    superuser.is_active = True
    assert not policy.can(None, "view", procedure)
    from django.contrib.auth.models import AnonymousUser

    assert not policy.can(AnonymousUser(), "view", procedure)
    assert not policy.procedures_visible_to(AnonymousUser()).exists()


@pytest.mark.django_db
def test_a_grant_counts_only_for_an_outsourced_operator(world):
    viewer = get_user_model().objects.create_user("viewer-with-grant", is_staff=True)
    StaffMembership.objects.create(user=viewer, role=Role.DEPARTMENT_VIEWER, department=world.department_a)
    ProcedureGrant.objects.create(user=viewer, procedure=world[B].procedure)
    assert not policy.can(viewer, "view", world[B].procedure)
    assert not policy.can(viewer, "process", world[B].application)
    assert policy.can(viewer, "view", world[A_OTHER].procedure)


# --------------------------------------------------------------------------
# Memberships: which department goes with which role
# --------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "role, with_department, valid",
    [
        (Role.SYSTEM_ADMIN, False, True),
        (Role.SYSTEM_ADMIN, True, False),
        (Role.DEPARTMENT_STAFF, True, True),
        (Role.DEPARTMENT_STAFF, False, False),
        (Role.DEPARTMENT_VIEWER, True, True),
        (Role.DEPARTMENT_VIEWER, False, False),
        (Role.OUTSOURCED_OPERATOR, False, True),
        (Role.OUTSOURCED_OPERATOR, True, False),
        (Role.AUDITOR, True, True),
        (Role.AUDITOR, False, True),
    ],
)
def test_membership_department_fits_the_role(world, role, with_department, valid):
    user = get_user_model().objects.create_user(f"m-{role}-{with_department}", is_staff=True)
    membership = StaffMembership(user=user, role=role, department=world.department_a if with_department else None)
    if valid:
        membership.full_clean()
        membership.save()
    else:
        with pytest.raises(ValidationError):
            membership.full_clean()
        with pytest.raises(IntegrityError), transaction.atomic():
            membership.save()  # the database refuses it too


@pytest.mark.django_db
def test_the_same_role_twice_is_refused(world):
    user = world.users["auditor_citywide"]
    with pytest.raises(IntegrityError), transaction.atomic():
        StaffMembership.objects.create(user=user, role=Role.AUDITOR, department=None)
    with pytest.raises(IntegrityError), transaction.atomic():
        StaffMembership.objects.create(user=world.users["auditor"], role=Role.AUDITOR, department=world.department_a)


# --------------------------------------------------------------------------
# Services: role changes, each one in the audit log
# --------------------------------------------------------------------------


def _entries(action: str):
    return AuditEntry.objects.filter(action=action).order_by("pk")


@pytest.mark.django_db
def test_membership_services_record_each_role_change(world, rf):
    admin = world.users["system_admin"]
    newcomer = get_user_model().objects.create_user("newcomer", is_staff=False)
    request = rf.get("/", REMOTE_ADDR="192.0.2.7", HTTP_USER_AGENT="pytest")
    procedure = world[A_OTHER].procedure
    assert not policy.can(newcomer, "view", procedure)

    membership = services.membership_add(
        actor=admin, user=newcomer, role=Role.DEPARTMENT_VIEWER, department=world.department_a, request=request
    )
    newcomer.refresh_from_db()
    assert newcomer.is_staff  # holding a role means working in the admin
    assert policy.can(newcomer, "view", procedure) and not policy.can(newcomer, "build", procedure)
    granted = _entries("role.grant").get(object_id=str(membership.pk))
    assert granted.actor == admin and granted.actor_display == "system_admin"
    assert granted.object_type == "staff.staffmembership" and granted.department == world.department_a
    assert granted.details == {"user_id": newcomer.pk, "role": "department_viewer", "department_id": world.department_a.pk}
    assert (granted.ip, granted.user_agent) == ("192.0.2.7", "pytest")

    services.membership_change(actor=admin, membership=membership, role=Role.DEPARTMENT_STAFF, department=world.department_b)
    changed = _entries("role.change").get(object_id=str(membership.pk))
    assert changed.details["role_before"] == "department_viewer" and changed.details["role"] == "department_staff"
    assert changed.details["department_id_before"] == world.department_a.pk
    assert not policy.can(newcomer, "view", procedure)
    assert policy.can(newcomer, "build", world[B].procedure)

    with pytest.raises(ValidationError):
        services.membership_change(actor=admin, membership=membership, role=Role.DEPARTMENT_STAFF, department=None)
    membership.refresh_from_db()
    membership_id = membership.pk
    services.membership_remove(actor=admin, membership=membership)
    assert _entries("role.revoke").filter(object_id=str(membership_id)).exists()
    fresh = get_user_model().objects.get(pk=newcomer.pk)  # the next request's user object
    assert not policy.can(fresh, "view", world[B].procedure)


@pytest.mark.django_db
def test_grant_services_record_each_change(world):
    admin = world.users["superuser"]
    operator = world.users["outsourced_operator"]
    target = world[B].procedure
    assert not policy.can(operator, "process", target)
    grant = services.grant_add(actor=admin, user=operator, procedure=target)
    assert policy.can(operator, "process", target) and not policy.can(operator, "export", target)
    entry = _entries("role.procedure_grant").get(object_id=str(grant.pk))
    assert entry.department == world.department_b and entry.details == {"user_id": operator.pk, "procedure_id": target.pk}
    with pytest.raises(ValidationError):
        services.grant_add(actor=admin, user=operator, procedure=target)
    grant_id = grant.pk
    services.grant_remove(actor=admin, grant=grant)
    assert _entries("role.procedure_revoke").filter(object_id=str(grant_id)).exists()
    assert not policy.can(operator, "process", target)


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["department_staff", "auditor_citywide", "no_role"])
def test_only_system_admins_change_roles(world, role):
    actor = world.users[role]
    before = AuditEntry.objects.count()
    with pytest.raises(PermissionDenied):
        services.membership_add(actor=actor, user=actor, role=Role.SYSTEM_ADMIN)
    with pytest.raises(PermissionDenied):
        services.grant_add(actor=actor, user=actor, procedure=world[B].procedure)
    assert not StaffMembership.objects.filter(user=actor, role=Role.SYSTEM_ADMIN).exists()
    assert AuditEntry.objects.count() == before


@pytest.mark.django_db
def test_roles_are_cached_per_user_object(world, django_assert_max_num_queries):
    user = get_user_model().objects.get(pk=world.users["department_staff"].pk)
    procedures = [world[place].procedure for place in PLACES]
    with django_assert_max_num_queries(1):
        for _ in range(3):
            for procedure in procedures:
                for action in ("view", "build", "export"):
                    policy.can(user, action, procedure)


# --------------------------------------------------------------------------
# The staff pages in the admin
# --------------------------------------------------------------------------


def _inline_management(prefix: str, total: int = 1, initial: int = 0) -> dict:
    return {
        f"{prefix}-TOTAL_FORMS": str(total),
        f"{prefix}-INITIAL_FORMS": str(initial),
        f"{prefix}-MIN_NUM_FORMS": "0",
        f"{prefix}-MAX_NUM_FORMS": "1000",
    }


@pytest.mark.django_db
def test_system_admin_gives_a_role_on_the_user_page_and_it_is_logged(world, client):
    newcomer = get_user_model().objects.create_user("page-newcomer", is_staff=True)
    client.force_login(world.users["system_admin"])
    url = reverse("admin:auth_user_change", args=[newcomer.pk])
    page = client.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert "役割" in html and "委託事業者として担当する手続き" in html
    data = {
        "username": newcomer.username,
        "is_active": "on",
        "is_staff": "on",
        "date_joined_0": "2026-01-01",
        "date_joined_1": "09:00:00",
        **_inline_management("staff_memberships"),
        "staff_memberships-0-role": Role.AUDITOR,
        "staff_memberships-0-department": str(world.department_b.pk),
        "staff_memberships-0-user": str(newcomer.pk),
        **_inline_management("procedure_grants", total=0),
    }
    response = client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:3000]
    membership = StaffMembership.objects.get(user=newcomer)
    assert (membership.role, membership.department) == (Role.AUDITOR, world.department_b)
    entry = _entries("role.grant").get(object_id=str(membership.pk))
    assert entry.actor == world.users["system_admin"]


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_staff_pages_are_for_system_admins(world, client, role):
    client.force_login(world.users[role])
    allowed = role in ("superuser", "system_admin")
    for name in ("auth_user", "staff_staffmembership", "staff_proceduregrant", "staff_department"):
        response = client.get(reverse(f"admin:{name}_changelist"))
        assert (response.status_code == 200) is allowed, (name, response.status_code)
    response = client.get(reverse("admin:auth_user_change", args=[world.users["no_role"].pk]))
    assert (response.status_code == 200) is allowed
    index = client.get(reverse("admin:index")).content.decode()
    assert ("職員の役割" in index) is allowed


@pytest.mark.django_db
def test_membership_list_changes_go_through_the_services(world, client):
    client.force_login(world.users["system_admin"])
    someone = get_user_model().objects.create_user("list-someone", is_staff=True)
    response = client.post(
        reverse("admin:staff_staffmembership_add"),
        {"user": someone.pk, "role": Role.DEPARTMENT_VIEWER, "department": world.department_a.pk},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    membership = StaffMembership.objects.get(user=someone)
    assert _entries("role.grant").filter(object_id=str(membership.pk)).exists()
    response = client.post(reverse("admin:staff_staffmembership_delete", args=[membership.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert not StaffMembership.objects.filter(pk=membership.pk).exists()
    assert _entries("role.revoke").filter(object_id=str(membership.pk)).exists()

    response = client.post(
        reverse("admin:staff_proceduregrant_add"), {"user": someone.pk, "procedure": world[B].procedure.pk}
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    grant = ProcedureGrant.objects.get(user=someone)
    assert _entries("role.procedure_grant").filter(object_id=str(grant.pk)).exists()


@pytest.mark.django_db
def test_audit_entries_find_the_department_of_objects_the_policy_does_not_know(world):
    application = world[B].application

    class Unknown:
        _meta = None

        def __init__(self, **attributes):
            self.__dict__.update(attributes)

    assert policy.department_id_of(Unknown(application_id=application.pk, application=application)) == world.department_b.pk
    assert policy.department_id_of(Unknown(procedure_id=1, procedure=world[A_OTHER].procedure)) == world.department_a.pk
    assert policy.department_id_of(Unknown(department_id=world.department_b.pk)) == world.department_b.pk
    assert policy.department_id_of(Unknown()) is None
    assert not policy.can(world.users["department_staff"], "view", Unknown(procedure_id=1))
    assert policy.can(world.users["superuser"], "view", Unknown())
