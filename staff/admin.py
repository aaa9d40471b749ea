"""Departments, staff accounts with their roles, and outsourced operators' procedures (system administrators only).

Roles and grants are written through staff/services.py, so every change lands in the audit log.
"""

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.utils.translation import gettext_lazy as _

from staff import services
from staff.mixins import ScopedAdminMixin
from staff.models import Department, ProcedureGrant, StaffMembership

User = get_user_model()


def _mark_saved(obj, saved) -> None:
    """Let the admin go on with the row a service created (redirects, change messages)."""
    obj.pk = saved.pk
    obj.created_at = saved.created_at
    obj._state.adding = False
    obj._state.db = saved._state.db


@admin.register(Department)
class DepartmentAdmin(ScopedAdminMixin, admin.ModelAdmin):
    list_display = ["name", "code", "broadcasts_need_approval"]
    search_fields = ["name", "code"]


# --------------------------------------------------------------------------
# Roles and grants on the staff account page
# --------------------------------------------------------------------------


class StaffMembershipInline(ScopedAdminMixin, admin.TabularInline):
    model = StaffMembership
    fk_name = "user"
    fields = ["role", "department", "created_at"]
    readonly_fields = ["created_at"]
    extra = 0
    verbose_name = _("役割")
    verbose_name_plural = _("役割（部署ごと）")


class ProcedureGrantInline(ScopedAdminMixin, admin.TabularInline):
    model = ProcedureGrant
    fk_name = "user"
    fields = ["procedure", "created_at"]
    readonly_fields = ["created_at"]
    autocomplete_fields = ["procedure"]
    extra = 0
    verbose_name = _("担当手続き")
    verbose_name_plural = _("委託事業者として担当する手続き（役割「委託事業者」があるときだけ有効）")


def _save_memberships(request, user, formset) -> None:
    formset.save(commit=False)
    for membership in formset.deleted_objects:
        services.membership_remove(actor=request.user, membership=membership, request=request)
    for membership, _changed in formset.changed_objects:
        services.membership_change(
            actor=request.user, membership=membership, role=membership.role, department=membership.department,
            request=request,
        )
    for membership in formset.new_objects:
        saved = services.membership_add(
            actor=request.user, user=user, role=membership.role, department=membership.department, request=request
        )
        _mark_saved(membership, saved)


def _save_grants(request, user, formset) -> None:
    formset.save(commit=False)
    for grant in formset.deleted_objects:
        services.grant_remove(actor=request.user, grant=grant, request=request)
    for grant, _changed in formset.changed_objects:
        services.grant_remove(actor=request.user, grant=ProcedureGrant.objects.get(pk=grant.pk), request=request)
        saved = services.grant_add(actor=request.user, user=user, procedure=grant.procedure, request=request)
        _mark_saved(grant, saved)
    for grant in formset.new_objects:
        saved = services.grant_add(actor=request.user, user=user, procedure=grant.procedure, request=request)
        _mark_saved(grant, saved)


if admin.site.is_registered(User):
    admin.site.unregister(User)


@admin.register(User)
class StaffUserAdmin(ScopedAdminMixin, DjangoUserAdmin):
    inlines = [StaffMembershipInline, ProcedureGrantInline]
    list_display = ["username", "email", "is_active", "is_staff", "is_superuser", "roles_summary"]
    list_filter = ["is_active", "is_staff", "is_superuser", "staff_memberships__role"]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("staff_memberships__department")

    @admin.display(description=_("役割"))
    def roles_summary(self, obj):
        parts = []
        for membership in obj.staff_memberships.all():
            where = membership.department.name if membership.department_id else _("全庁")
            parts.append(f"{membership.get_role_display()}（{where}）")
        return "、".join(parts) or "—"

    def save_formset(self, request, form, formset, change):
        if formset.model is StaffMembership:
            _save_memberships(request, form.instance, formset)
        elif formset.model is ProcedureGrant:
            _save_grants(request, form.instance, formset)
        else:
            super().save_formset(request, form, formset, change)


# --------------------------------------------------------------------------
# The lists of roles and grants
# --------------------------------------------------------------------------


@admin.register(StaffMembership)
class StaffMembershipAdmin(ScopedAdminMixin, admin.ModelAdmin):
    list_display = ["user", "role", "department", "created_at"]
    list_filter = ["role", "department"]
    list_select_related = ["user", "department"]
    search_fields = ["user__username", "user__email"]
    autocomplete_fields = ["user"]
    fields = ["user", "role", "department", "created_at"]
    readonly_fields = ["created_at"]

    def get_readonly_fields(self, request, obj=None):
        return ["user", "created_at"] if obj is not None else ["created_at"]

    def save_model(self, request, obj, form, change):
        if change:
            services.membership_change(
                actor=request.user, membership=obj, role=obj.role, department=obj.department, request=request
            )
        else:
            saved = services.membership_add(
                actor=request.user, user=obj.user, role=obj.role, department=obj.department, request=request
            )
            _mark_saved(obj, saved)

    def delete_model(self, request, obj):
        services.membership_remove(actor=request.user, membership=obj, request=request)

    def delete_queryset(self, request, queryset):
        for membership in queryset.select_related("user"):
            services.membership_remove(actor=request.user, membership=membership, request=request)


@admin.register(ProcedureGrant)
class ProcedureGrantAdmin(ScopedAdminMixin, admin.ModelAdmin):
    list_display = ["user", "procedure", "procedure_department", "created_at"]
    list_filter = ["procedure__department", "procedure"]
    list_select_related = ["user", "procedure__department"]
    search_fields = ["user__username", "procedure__name"]
    autocomplete_fields = ["user", "procedure"]
    fields = ["user", "procedure", "created_at"]
    readonly_fields = ["created_at"]

    @admin.display(description=_("担当部署"), ordering="procedure__department__name")
    def procedure_department(self, obj):
        return obj.procedure.department or "—"

    def has_change_permission(self, request, obj=None):
        # A grant is given or taken back, never edited (each is one audit entry).
        return obj is None and super().has_change_permission(request, obj)

    def save_model(self, request, obj, form, change):
        saved = services.grant_add(actor=request.user, user=obj.user, procedure=obj.procedure, request=request)
        _mark_saved(obj, saved)

    def delete_model(self, request, obj):
        services.grant_remove(actor=request.user, grant=obj, request=request)

    def delete_queryset(self, request, queryset):
        for grant in queryset.select_related("user"):
            services.grant_remove(actor=request.user, grant=grant, request=request)
