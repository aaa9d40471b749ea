"""Writes for staff access: roles (memberships) and the procedures granted to outsourced operators.

Every change is recorded in the audit log as a role change. `actor` is the staff member making the
change (None for the system itself, e.g. a management command); a given actor must be allowed to
administer staff access (staff.policy).
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.db import transaction

from audit import actions
from audit.services import audit_record
from staff import policy
from staff.models import ProcedureGrant, StaffMembership


def _check_actor(actor) -> None:
    if actor is not None and not policy.can(actor, policy.ADMINISTER, StaffMembership):
        raise PermissionDenied


def _user_ready_for_admin(user) -> None:
    """Holding a role means working in the admin, which needs is_staff."""
    if not user.is_staff:
        user.is_staff = True
        user.save(update_fields=["is_staff"])


@transaction.atomic
def membership_add(*, actor, user, role: str, department=None, request=None) -> StaffMembership:
    _check_actor(actor)
    membership = StaffMembership(user=user, role=role, department=department)
    membership.full_clean()
    membership.save()
    _user_ready_for_admin(user)
    audit_record(
        actor=actor,
        action=actions.ROLE_GRANT,
        obj=membership,
        details={"user_id": user.pk, "role": role, "department_id": membership.department_id},
        request=request,
    )
    policy.forget(user)
    return membership


@transaction.atomic
def membership_change(*, actor, membership: StaffMembership, role: str, department=None, request=None) -> StaffMembership:
    _check_actor(actor)
    before = StaffMembership.objects.select_for_update().get(pk=membership.pk)
    membership.role = role
    membership.department = department
    membership.full_clean()
    if (before.role, before.department_id) == (membership.role, membership.department_id):
        return membership
    membership.save()
    audit_record(
        actor=actor,
        action=actions.ROLE_CHANGE,
        obj=membership,
        department=membership.department_id or before.department_id,
        details={
            "user_id": membership.user_id,
            "role_before": before.role,
            "department_id_before": before.department_id,
            "role": membership.role,
            "department_id": membership.department_id,
        },
        request=request,
    )
    policy.forget(membership.user)
    return membership


@transaction.atomic
def membership_remove(*, actor, membership: StaffMembership, request=None) -> None:
    _check_actor(actor)
    audit_record(
        actor=actor,
        action=actions.ROLE_REVOKE,
        obj=membership,
        details={"user_id": membership.user_id, "role": membership.role, "department_id": membership.department_id},
        request=request,
    )
    membership.delete()
    policy.forget(membership.user)


@transaction.atomic
def grant_add(*, actor, user, procedure, request=None) -> ProcedureGrant:
    _check_actor(actor)
    grant = ProcedureGrant(user=user, procedure=procedure)
    grant.full_clean()
    grant.save()
    audit_record(
        actor=actor,
        action=actions.PROCEDURE_GRANT_ADD,
        obj=grant,
        details={"user_id": user.pk, "procedure_id": procedure.pk},
        request=request,
    )
    policy.forget(user)
    return grant


@transaction.atomic
def grant_remove(*, actor, grant: ProcedureGrant, request=None) -> None:
    _check_actor(actor)
    audit_record(
        actor=actor,
        action=actions.PROCEDURE_GRANT_REMOVE,
        obj=grant,
        details={"user_id": grant.user_id, "procedure_id": grant.procedure_id},
        request=request,
    )
    grant.delete()
    policy.forget(grant.user)
