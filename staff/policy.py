"""THE access policy: who may do what to which object. Every check in the project asks this module.

Roles (staff.models.Role) and what they may do, within their scope:

- system administrator (city-wide): everything, including `administer` (staff accounts, roles,
  departments, residents' records). A Django superuser is a system administrator.
- department staff (per department): view, change, build (drafts, publishing), process
  (statuses, messages), export, reveal_sensitive.
- department viewer (per department): view.
- outsourced operator / 委託事業者 (only the procedures granted by ProcedureGrant rows): view,
  process, reveal_sensitive. Never export, never build.
- auditor (per department, or city-wide when the membership has no department): view, export,
  reveal_sensitive, view_audit. Read-only.

Scope: an object belongs to the department of its procedure (procedure, version, step, choice,
computed value, application) or to its own department (audit entry, segment, broadcast, campaign;
none = city-wide). An object without a department is reached only with city-wide access, except
a city-wide segment, which staff of every department view (ObjectType.unowned_is_shared). A resident is visible to whoever
may view one of the resident's applications; everything else about residents is `administer`.
Audit entries are never changed or deleted, by anyone.

Functions take the user (not the request), read only the database and cache the user's roles on
the user object (one request); call forget(user) after changing that user's roles.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from django.contrib.auth import get_user_model
from django.db.models import Model, Q, QuerySet

from audit.models import AuditEntry
from broadcasts.models import Broadcast, BroadcastChunk, BroadcastRun, Campaign, CampaignRecipient
from broadcasts.richmenu.models import (
    DisasterModeSwitch,
    RichMenu,
    RichMenuArea,
    RichMenuDeployment,
    RichMenuLink,
    RichMenuTapCount,
)
from integrations.models import WebhookDelivery, WebhookEndpoint
from procedures.models import Application, ComputedValue, Procedure, ProcedureVersion, Step, StepChoice
from residents.models import (
    Attribute,
    Category,
    ProfileChange,
    Resident,
    ResidentAttributeValue,
    ResidentCategory,
    Segment,
)
from staff.models import Department, ProcedureGrant, Role, StaffMembership

VIEW = "view"
CHANGE = "change"
BUILD = "build"
PROCESS = "process"
EXPORT = "export"
REVEAL_SENSITIVE = "reveal_sensitive"
VIEW_AUDIT = "view_audit"
ACTIONS = (VIEW, CHANGE, BUILD, PROCESS, EXPORT, REVEAL_SENSITIVE, VIEW_AUDIT)
# Held by system administrators only: staff accounts, roles, departments, residents' records.
ADMINISTER = "administer"
ALL_ACTIONS = frozenset(ACTIONS) | {ADMINISTER}

ROLE_ACTIONS: Mapping[str, frozenset[str]] = {
    Role.SYSTEM_ADMIN: ALL_ACTIONS,
    Role.DEPARTMENT_STAFF: frozenset({VIEW, CHANGE, BUILD, PROCESS, EXPORT, REVEAL_SENSITIVE}),
    Role.DEPARTMENT_VIEWER: frozenset({VIEW}),
    Role.OUTSOURCED_OPERATOR: frozenset({VIEW, PROCESS, REVEAL_SENSITIVE}),
    Role.AUDITOR: frozenset({VIEW, EXPORT, REVEAL_SENSITIVE, VIEW_AUDIT}),
}

_CACHE = "_staff_policy_cache"


# --------------------------------------------------------------------------
# The user's reach for one action
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Access:
    """Where a user may perform one action: everywhere, in some departments, on some procedures."""

    everywhere: bool = False
    department_ids: frozenset[int] = field(default_factory=frozenset)
    procedure_ids: frozenset[int] = field(default_factory=frozenset)

    def __bool__(self) -> bool:
        return self.everywhere or bool(self.department_ids) or bool(self.procedure_ids)

    def covers(self, department_id: int | None, procedure_id: int | None = None) -> bool:
        return (
            self.everywhere
            or (department_id is not None and department_id in self.department_ids)
            or (procedure_id is not None and procedure_id in self.procedure_ids)
        )


NOWHERE = Access()
EVERYWHERE = Access(everywhere=True)


def _is_staff_account(user) -> bool:
    return bool(
        user is not None
        and getattr(user, "is_authenticated", False)
        and getattr(user, "is_active", False)
        and (getattr(user, "is_staff", False) or getattr(user, "is_superuser", False))
    )


def _cache(user) -> dict:
    cache = getattr(user, _CACHE, None)
    if cache is None:
        cache = {}
        setattr(user, _CACHE, cache)
    return cache


def forget(user) -> None:
    """Drop what this user object remembers about its roles (after they changed)."""
    if user is not None and hasattr(user, _CACHE):
        delattr(user, _CACHE)


def _memberships(user) -> list[tuple[str, int | None]]:
    cache = _cache(user)
    if "memberships" not in cache:
        cache["memberships"] = list(
            StaffMembership.objects.filter(user_id=user.pk).values_list("role", "department_id")
        )
    return cache["memberships"]


def _granted_procedures(user) -> frozenset[int]:
    cache = _cache(user)
    if "grants" not in cache:
        cache["grants"] = frozenset(
            ProcedureGrant.objects.filter(user_id=user.pk).values_list("procedure_id", flat=True)
        )
    return cache["grants"]


def roles(user) -> set[str]:
    """The roles the user holds anywhere (a superuser counts as system administrator)."""
    if not _is_staff_account(user):
        return set()
    held = {role for role, _department in _memberships(user)}
    if user.is_superuser:
        held.add(Role.SYSTEM_ADMIN.value)
    return held


def is_system_admin(user) -> bool:
    return Role.SYSTEM_ADMIN.value in roles(user)


def access(user, action: str) -> Access:
    """Where `user` may perform `action`."""
    if action not in ALL_ACTIONS:
        raise ValueError(f"unknown action: {action!r}")
    if not _is_staff_account(user):
        return NOWHERE
    if user.is_superuser:
        return EVERYWHERE
    cache = _cache(user)
    key = ("access", action)
    if key in cache:
        return cache[key]
    departments: set[int] = set()
    procedures: frozenset[int] = frozenset()
    everywhere = False
    for role, department_id in _memberships(user):
        if action not in ROLE_ACTIONS.get(role, ()):
            continue
        if role == Role.SYSTEM_ADMIN or (role == Role.AUDITOR and department_id is None):
            everywhere = True
        elif role == Role.OUTSOURCED_OPERATOR:
            procedures = _granted_procedures(user)
        elif department_id is not None:
            departments.add(department_id)
    result = EVERYWHERE if everywhere else Access(department_ids=frozenset(departments), procedure_ids=procedures)
    cache[key] = result
    return result


# --------------------------------------------------------------------------
# Object types: where an object's department and procedure are, and what admin permissions mean
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectType:
    name: str
    # instance -> (department id, procedure id)
    subject: Callable[[Model], tuple[int | None, int | None]]
    # ORM paths from the model to its department id and procedure id (None: not scoped that way)
    department_path: str | None
    procedure_path: str | None
    # Django admin permission (view/add/change/delete) -> policy action (None: nobody, ever)
    permissions: Mapping[str, str | None]
    # An object without a department is city-wide and shared: staff of any department who may
    # view this type view it too (and use it), but only those with reach everywhere change it.
    unowned_is_shared: bool = False


def _via_procedure(get_procedure) -> Callable[[Model], tuple[int | None, int | None]]:
    def subject(obj):
        procedure = get_procedure(obj)
        if procedure is None:
            return None, None
        return procedure.department_id, procedure.pk

    return subject


def _version_procedure(obj):
    return obj.version.procedure if obj.version_id else None


_BUILDER_PERMISSIONS = {"view": VIEW, "add": BUILD, "change": BUILD, "delete": BUILD}
_ADMINISTER_ONLY = {"view": ADMINISTER, "add": ADMINISTER, "change": ADMINISTER, "delete": ADMINISTER}

PROCEDURE = ObjectType(
    "procedure",
    lambda obj: (obj.department_id, obj.pk),
    "department",
    "pk",
    {"view": VIEW, "add": BUILD, "change": CHANGE, "delete": CHANGE},
)
VERSION = ObjectType(
    "version",
    _via_procedure(lambda obj: obj.procedure if obj.procedure_id else None),
    "procedure__department",
    "procedure",
    _BUILDER_PERMISSIONS,
)
STEP = ObjectType(
    "step",
    _via_procedure(_version_procedure),
    "version__procedure__department",
    "version__procedure",
    _BUILDER_PERMISSIONS,
)
STEP_CHOICE = ObjectType(
    "step_choice",
    _via_procedure(lambda obj: _version_procedure(obj.step) if obj.step_id else None),
    "step__version__procedure__department",
    "step__version__procedure",
    _BUILDER_PERMISSIONS,
)
COMPUTED_VALUE = ObjectType(
    "computed_value",
    _via_procedure(_version_procedure),
    "version__procedure__department",
    "version__procedure",
    _BUILDER_PERMISSIONS,
)
APPLICATION = ObjectType(
    "application",
    _via_procedure(lambda obj: obj.procedure if obj.procedure_id else None),
    "procedure__department",
    "procedure",
    {"view": VIEW, "add": PROCESS, "change": PROCESS, "delete": ADMINISTER},
)
RESIDENT = ObjectType(
    "resident",
    lambda obj: (None, None),
    None,
    None,
    {"view": VIEW, "add": ADMINISTER, "change": ADMINISTER, "delete": ADMINISTER},
)
AUDIT_ENTRY = ObjectType(
    "audit_entry",
    lambda obj: (obj.department_id, None),
    "department",
    None,
    {"view": VIEW_AUDIT, "add": None, "change": None, "delete": None},
)

# Outgoing webhooks (integrations/): an endpoint's settings (URL, secret) are the procedure's "change";
# its delivery log is the procedure's "view" (it never shows the payload); a resend is "change".
WEBHOOK_ENDPOINT = ObjectType(
    "webhook_endpoint",
    _via_procedure(lambda obj: obj.procedure if obj.procedure_id else None),
    "procedure__department",
    "procedure",
    {"view": CHANGE, "add": CHANGE, "change": CHANGE, "delete": CHANGE},
)
WEBHOOK_DELIVERY = ObjectType(
    "webhook_delivery",
    _via_procedure(lambda obj: obj.endpoint.procedure if obj.endpoint_id else None),
    "endpoint__procedure__department",
    "endpoint__procedure",
    {"view": VIEW, "add": None, "change": CHANGE, "delete": None},
)


# Residents' profile definitions and records (attributes, categories, their values and history):
# only system administrators edit them; a resident's own answers are never edited by staff.
RESIDENT_PROFILE = ObjectType("resident_profile", lambda obj: (None, None), None, None, _ADMINISTER_ONLY)

_DEPARTMENT_OWNED_PERMISSIONS = {"view": VIEW, "add": CHANGE, "change": CHANGE, "delete": CHANGE}
# Segments and broadcasts belong to their own department (none = city-wide).
SEGMENT = ObjectType(
    "segment",
    lambda obj: (obj.department_id, None),
    "department",
    None,
    _DEPARTMENT_OWNED_PERMISSIONS,
    unowned_is_shared=True,
)
BROADCAST = ObjectType(
    "broadcast", lambda obj: (obj.department_id, None), "department", None, _DEPARTMENT_OWNED_PERMISSIONS
)
BROADCAST_RUN = ObjectType(
    "broadcast_run",
    lambda obj: (obj.broadcast.department_id, None),
    "broadcast__department",
    None,
    {"view": VIEW, "add": None, "change": CHANGE, "delete": None},
)
BROADCAST_CHUNK = ObjectType(
    "broadcast_chunk",
    lambda obj: (obj.run.broadcast.department_id, None),
    "run__broadcast__department",
    None,
    {"view": VIEW, "add": None, "change": CHANGE, "delete": None},
)
# Push-and-confirm campaigns belong to their department; their recipients (rows of the imported CSV)
# are written only by the campaign's import, send and answers, never edited one by one.
CAMPAIGN = ObjectType(
    "campaign", lambda obj: (obj.department_id, None), "department", None, _DEPARTMENT_OWNED_PERMISSIONS
)
CAMPAIGN_RECIPIENT = ObjectType(
    "campaign_recipient",
    lambda obj: (obj.campaign.department_id, None),
    "campaign__department",
    None,
    {"view": VIEW, "add": None, "change": None, "delete": None},
)


# Rich menus are the whole city's front door: only system administrators build and deploy them.
RICH_MENU = ObjectType("rich_menu", lambda obj: (None, None), None, None, _ADMINISTER_ONLY)


def _staff_subject(obj):
    if isinstance(obj, Department):
        return obj.pk, None
    if isinstance(obj, ProcedureGrant):
        return (obj.procedure.department_id, obj.procedure_id) if obj.procedure_id else (None, None)
    return getattr(obj, "department_id", None), None


# Departments, roles, grants and user accounts: the subject only says where an audit entry belongs.
STAFF_ADMINISTRATION = ObjectType("staff", _staff_subject, None, None, _ADMINISTER_ONLY)

_TYPES: dict[type[Model], ObjectType] = {
    Procedure: PROCEDURE,
    ProcedureVersion: VERSION,
    Step: STEP,
    StepChoice: STEP_CHOICE,
    ComputedValue: COMPUTED_VALUE,
    Application: APPLICATION,
    Resident: RESIDENT,
    Attribute: RESIDENT_PROFILE,
    Category: RESIDENT_PROFILE,
    ResidentAttributeValue: RESIDENT_PROFILE,
    ResidentCategory: RESIDENT_PROFILE,
    ProfileChange: RESIDENT_PROFILE,
    Segment: SEGMENT,
    Broadcast: BROADCAST,
    BroadcastRun: BROADCAST_RUN,
    BroadcastChunk: BROADCAST_CHUNK,
    Campaign: CAMPAIGN,
    RichMenu: RICH_MENU,
    RichMenuArea: RICH_MENU,
    RichMenuDeployment: RICH_MENU,
    RichMenuLink: RICH_MENU,
    RichMenuTapCount: RICH_MENU,
    DisasterModeSwitch: RICH_MENU,
    CampaignRecipient: CAMPAIGN_RECIPIENT,
    AuditEntry: AUDIT_ENTRY,
    WebhookEndpoint: WEBHOOK_ENDPOINT,
    WebhookDelivery: WEBHOOK_DELIVERY,
    Department: STAFF_ADMINISTRATION,
    StaffMembership: STAFF_ADMINISTRATION,
    ProcedureGrant: STAFF_ADMINISTRATION,
}


def object_type(target) -> ObjectType | None:
    """The policy's type of a model class or instance (subclasses, e.g. each step kind, follow their base)."""
    model = target if isinstance(target, type) else type(target)
    for klass in model.__mro__:
        found = _TYPES.get(klass)
        if found is not None:
            return found
    if issubclass(model, get_user_model()):
        return STAFF_ADMINISTRATION
    return None


def department_id_of(obj) -> int | None:
    """The department an object belongs to (None: city-wide or none) – for audit entries.

    Models the policy does not know yet are followed through an `application` or `procedure`
    relation or a `department_id` of their own (this never grants access: checks need a known type).
    """
    if obj is None or isinstance(obj, type):
        return None
    otype = object_type(obj)
    if otype is not None:
        return otype.subject(obj)[0]
    for relation in ("application", "procedure"):
        if getattr(obj, f"{relation}_id", None) is not None:
            return department_id_of(getattr(obj, relation))
    return getattr(obj, "department_id", None)


# --------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------


def _effective_actions(otype: ObjectType, action: str) -> tuple[str, ...]:
    """The policy actions an action on this type needs (all of them); () means nobody may."""
    if otype is AUDIT_ENTRY:
        if action in (VIEW, VIEW_AUDIT):
            return (VIEW_AUDIT,)
        if action == EXPORT:
            return (VIEW_AUDIT, EXPORT)
        return ()  # append-only: no change, build, process, reveal or administer, even for superusers
    if otype is STAFF_ADMINISTRATION:
        return (ADMINISTER,)
    if otype is RESIDENT and action != VIEW:
        return (ADMINISTER,)
    return (action,)


def can(user, action: str, target) -> bool:
    """May `user` perform `action` on `target` (an instance), or on some object of that model (a class)?"""
    if action not in ALL_ACTIONS:
        raise ValueError(f"unknown action: {action!r}")
    otype = object_type(target)
    if otype is None:
        return _is_staff_account(user) and user.is_superuser
    needed = _effective_actions(otype, action)
    if not needed:
        return False
    for each in needed:
        reach = access(user, each)
        if not reach:
            return False
        if isinstance(target, type):
            if otype is not RESIDENT and not _reaches_some(reach, otype):
                return False  # e.g. an operator's procedure grants say nothing about segments
            continue
        if reach.everywhere:
            continue
        if otype is RESIDENT:  # action is VIEW here: through the resident's applications
            if target.pk is None or not residents_visible_to(user).filter(pk=target.pk).exists():
                return False
        elif otype is STAFF_ADMINISTRATION:
            return False  # administer is city-wide only
        elif not reach.covers(*otype.subject(target)) and not _shared_with(reach, otype, each, target):
            return False
    return True


def _reaches_some(reach: Access, otype: ObjectType) -> bool:
    """Could `reach` cover any object of this type (what `_filter` can match)?"""
    return (
        reach.everywhere
        or bool(reach.department_ids and otype.department_path)
        or bool(reach.procedure_ids and otype.procedure_path)
    )


def _shared_with(reach: Access, otype: ObjectType, action: str, target) -> bool:
    """A city-wide object of a shared type, viewed by staff of some department (ObjectType.unowned_is_shared)."""
    return action == VIEW and otype.unowned_is_shared and bool(reach.department_ids) and otype.subject(target)[0] is None


def admin_permission(user, permission: str, model, obj=None) -> bool:
    """The Django admin's has_<permission>_permission for `model`, answered by this policy.

    For an inline, `model` is the inline's model and `obj` the parent object being edited.
    """
    otype = object_type(model)
    if otype is None:
        return _is_staff_account(user) and user.is_superuser
    action = otype.permissions.get(permission)
    if action is None:
        return False
    return can(user, action, model if obj is None else obj)


# --------------------------------------------------------------------------
# Querysets
# --------------------------------------------------------------------------


def _filter(queryset: QuerySet, otype: ObjectType, reach: Access, action: str) -> QuerySet:
    if reach.everywhere:
        return queryset
    condition = Q()
    matched = False
    if reach.department_ids and otype.department_path:
        condition |= Q(**{f"{otype.department_path}__in": sorted(reach.department_ids)})
        if action == VIEW and otype.unowned_is_shared:
            condition |= Q(**{f"{otype.department_path}__isnull": True})
        matched = True
    if reach.procedure_ids and otype.procedure_path:
        condition |= Q(**{f"{otype.procedure_path}__in": sorted(reach.procedure_ids)})
        matched = True
    return queryset.filter(condition) if matched else queryset.none()


def scope(user, action: str, queryset: QuerySet) -> QuerySet:
    """`queryset` narrowed to the objects on which `user` may perform `action`."""
    if action not in ALL_ACTIONS:
        raise ValueError(f"unknown action: {action!r}")
    otype = object_type(queryset.model)
    if otype is None:
        return queryset if _is_staff_account(user) and user.is_superuser else queryset.none()
    needed = _effective_actions(otype, action)
    if not needed:
        return queryset.none()
    for each in needed:
        reach = access(user, each)
        if reach.everywhere:
            continue
        if not reach or otype is STAFF_ADMINISTRATION:
            return queryset.none()
        if otype is RESIDENT:
            queryset = queryset.filter(
                pk__in=applications_visible_to(user, action=VIEW).filter(resident__isnull=False).values("resident_id")
            )
        else:
            queryset = _filter(queryset, otype, reach, each)
    return queryset


def procedures_visible_to(user, *, action: str = VIEW) -> QuerySet[Procedure]:
    return scope(user, action, Procedure.objects.all())


def versions_visible_to(user, *, action: str = VIEW) -> QuerySet[ProcedureVersion]:
    return scope(user, action, ProcedureVersion.objects.all())


def applications_visible_to(user, *, action: str) -> QuerySet[Application]:
    return scope(user, action, Application.objects.all())


def residents_visible_to(user) -> QuerySet[Resident]:
    return scope(user, VIEW, Resident.objects.all())


def audit_entries_visible_to(user, *, action: str = VIEW_AUDIT) -> QuerySet[AuditEntry]:
    return scope(user, action, AuditEntry.objects.all())


def departments_for(user, action: str) -> QuerySet[Department]:
    """Departments in which `user` may perform `action` on everything (e.g. build: where they may create procedures)."""
    reach = access(user, action)
    if reach.everywhere:
        return Department.objects.all()
    return Department.objects.filter(pk__in=sorted(reach.department_ids))


def reads_resident_profiles(user) -> bool:
    """May `user` read residents' profiles: attributes, categories chosen, and their history?

    Seeing all of the profile models, whose view asks for `administer`: system administrators
    only. Pages and counts that would show a profile any other way ask this too.
    """
    return sees_all(user, ResidentAttributeValue)


def sees_all(user, model) -> bool:
    """True when `user` may view every object of `model` (a system administrator, a city-wide auditor…).

    Viewing is what the type's admin "view" permission asks for: plain view for most, but
    administer for residents' profiles, so a city-wide auditor sees every resident, not their profile.
    """
    otype = object_type(model)
    if otype is None:
        return _is_staff_account(user) and user.is_superuser
    action = otype.permissions.get("view")
    needed = _effective_actions(otype, action) if action else ()
    return bool(needed) and all(access(user, each).everywhere for each in needed)
