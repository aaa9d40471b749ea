"""ScopedAdminMixin: puts a Django admin (or inline) under staff/policy.py.

Put it first in the bases (`class ProcedureAdmin(ScopedAdminMixin, admin.ModelAdmin)`). Then:

- every queryset the admin uses is narrowed to what the user may view – also when a subclass
  overrides get_queryset() without calling super() (the override is wrapped at class creation);
- has_view/add/change/delete/module_permission come from policy.admin_permission() – Django's
  own model permissions are not consulted; a superuser is a system administrator;
- every URL of the admin that takes an object id (the default pages and the admin's own extra
  pages) first looks the object up in the scoped queryset: an object the user may not view is a
  404, exactly like an id that does not exist. An extra page then needs the policy's "view"
  (GET/HEAD) or "change" permission (other methods) on that object, or the action named for it
  in `scope_object_views`; otherwise 403. The page's own checks still run after that;
- admin actions are offered only where the policy allows them, and run only when every selected
  object allows them (`scope_actions` names the policy action when the action's declared
  permissions do not say enough, e.g. an export declared with permissions=["view"]). Actions
  that need "export" are written to the audit log;
- foreign-key choices are narrowed: departments to those where the user may build (and then
  required), procedures, versions and steps to those the user may build;
- a request naming a department, procedure, version or step in a parameter called like one of
  the model's foreign keys (department=, version=…) must name one within the user's reach:
  where they may build for POST, view for GET – also on extra pages with their own forms
  (e.g. a template import), and before any form reads the object;
- list filters on relations show only related objects the user can see.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

from django.contrib import admin, messages
from django.contrib.admin.options import InlineModelAdmin
from django.contrib.admin.utils import get_fields_from_path, unquote
from django.core.exceptions import FieldDoesNotExist, PermissionDenied
from django.http import Http404
from django.urls import URLPattern
from django.utils.translation import gettext as _

from audit.services import audit_record
from staff import policy
from staff.models import Department

_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
_DEFAULT_VIEWS = ("changelist", "add", "history", "delete", "change", "autocomplete")
_OBJECT_KWARGS = ("object_id", "id")
_SCOPED_REFERENCES = (policy.PROCEDURE, policy.VERSION, policy.STEP)


def _scoped_get_queryset(own):
    @functools.wraps(own)
    def get_queryset(self, request):
        return self.scope_queryset(request, own(self, request))

    get_queryset._policy_scoped = True
    return get_queryset


class ScopedAdminMixin:
    # Extra object pages (URL name suffix, e.g. "publish") -> the policy action they need.
    scope_object_views: Mapping[str, str] = {}
    # Admin action name -> the policy action each selected object must allow.
    scope_actions: Mapping[str, str] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("get_queryset")
        if own is not None and not getattr(own, "_policy_scoped", False):
            cls.get_queryset = _scoped_get_queryset(own)

    # -- querysets -----------------------------------------------------------

    def scope_queryset(self, request, queryset):
        return policy.scope(request.user, policy.VIEW, queryset)

    def get_queryset(self, request):
        return self.scope_queryset(request, super().get_queryset(request))

    # -- permissions ---------------------------------------------------------

    @property
    def _is_inline(self) -> bool:
        return isinstance(self, InlineModelAdmin)

    def _policy_allows(self, request, permission: str, obj=None) -> bool:
        return policy.admin_permission(request.user, permission, self.model, obj)

    def has_view_permission(self, request, obj=None):
        return self._policy_allows(request, "view", obj) or self._policy_allows(request, "change", obj)

    def has_add_permission(self, request, obj=None):
        # ModelAdmin asks without an object; an inline passes the parent object being edited.
        return self._policy_allows(request, "add", obj if self._is_inline else None)

    def has_change_permission(self, request, obj=None):
        return self._policy_allows(request, "change", obj)

    def has_delete_permission(self, request, obj=None):
        return self._policy_allows(request, "delete", obj)

    def has_module_permission(self, request):
        return any(self._policy_allows(request, permission) for permission in ("view", "change", "add", "delete"))

    # -- URLs: every object id goes through the scoped queryset ------------------

    @property
    def urls(self):
        return [self._guarded(pattern) for pattern in self.get_urls()]

    def _url_suffix(self, name: str | None) -> str:
        prefix = f"{self.opts.app_label}_{self.opts.model_name}_"
        return name[len(prefix) :] if name and name.startswith(prefix) else (name or "")

    def _guarded(self, pattern):
        if not isinstance(pattern, URLPattern):
            return pattern
        view = pattern.callback
        suffix = self._url_suffix(pattern.name)

        @functools.wraps(view)
        def guarded(request, *args, **kwargs):
            self.check_scope(request, suffix, kwargs)
            return view(request, *args, **kwargs)

        return URLPattern(pattern.pattern, guarded, pattern.default_args, pattern.name)

    def check_scope(self, request, suffix: str, kwargs: dict) -> None:
        """Raise Http404/PermissionDenied before a page of this admin runs (see the module docstring)."""
        user = request.user
        if not (user.is_active and user.is_staff):
            return  # the admin sends the visitor to the login page
        self._check_references(request)
        object_id = next((kwargs[key] for key in _OBJECT_KWARGS if key in kwargs), None)
        if object_id is None:
            return
        custom = suffix not in _DEFAULT_VIEWS and suffix != ""
        if not custom and policy.sees_all(user, self.model):
            return  # Django's own pages look the object up through get_queryset themselves
        obj = self.get_object(request, unquote(str(object_id)))
        if obj is None:
            raise Http404(_("指定された対象が見つかりません。"))
        if not custom:
            return
        action = self.scope_object_views.get(suffix)
        if action is not None:
            allowed = policy.can(user, action, obj)
        else:
            permission = "view" if request.method in _SAFE_METHODS else "change"
            allowed = self._policy_allows(request, permission, obj)
        if not allowed:
            raise PermissionDenied

    def _reference_fields(self) -> dict[str, object]:
        """Foreign keys of the model to departments, procedures, versions or steps (by form field name)."""
        fields = {}
        for field in self.opts.get_fields():
            if getattr(field, "many_to_one", False) and field.concrete and field.related_model is not None:
                related = field.related_model
                if issubclass(related, Department) or policy.object_type(related) in _SCOPED_REFERENCES:
                    fields[field.name] = related
        return fields

    def _check_references(self, request) -> None:
        """A request may only name departments, procedures, versions or steps within the user's reach.

        POST (creating, moving, importing): where the user may build. GET (e.g. ?version= preselecting
        the version of a new step): where the user may view. Refused with 403 before any form is built,
        so nothing of another department is read on the user's behalf.
        """
        fields = self._reference_fields()
        if not fields:
            return
        data = request.POST if request.method == "POST" else request.GET
        action = policy.BUILD if request.method == "POST" else policy.VIEW
        user = request.user
        for name, related in fields.items():
            for value in data.getlist(name):
                value = value.strip()
                if value == "":
                    if issubclass(related, Department) and request.method == "POST":
                        if not policy.access(user, policy.BUILD).everywhere:
                            raise PermissionDenied  # an object without a department is out of the user's reach
                    continue
                if not (value.isascii() and value.isdigit()):
                    raise PermissionDenied
                if issubclass(related, Department):
                    allowed = policy.departments_for(user, action).filter(pk=int(value)).exists()
                else:
                    allowed = policy.scope(user, action, related._default_manager.filter(pk=int(value))).exists()
                if not allowed:
                    raise PermissionDenied

    # -- form choices -----------------------------------------------------------

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        related = db_field.related_model
        user = request.user
        narrowed_department = False
        if isinstance(related, type) and issubclass(related, Department):
            if not policy.access(user, policy.BUILD).everywhere:
                kwargs["queryset"] = policy.departments_for(user, policy.BUILD)
                narrowed_department = True
        elif policy.object_type(related) in _SCOPED_REFERENCES:
            base = kwargs.get("queryset")
            if base is None:
                base = related._default_manager.all()
            kwargs["queryset"] = policy.scope(user, policy.BUILD, base)
        formfield = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if narrowed_department and formfield is not None:
            # Without a department the object would be out of the user's own reach.
            formfield.required = True
        return formfield

    # -- list filters -------------------------------------------------------------

    def get_list_filter(self, request):
        filters = super().get_list_filter(request)
        if policy.sees_all(request.user, self.model):
            return filters
        return [self._related_only(item) for item in filters]

    def _related_only(self, item):
        if not isinstance(item, str):
            return item
        try:
            last = get_fields_from_path(self.model, item)[-1]
        except (FieldDoesNotExist, Exception):  # noqa: BLE001 - an unusual filter stays as it is
            return item
        if getattr(last, "is_relation", False):
            return (item, admin.RelatedOnlyFieldListFilter)
        return item

    # -- actions --------------------------------------------------------------------

    def _policy_actions_for(self, name: str, func) -> tuple[str, ...]:
        if name in self.scope_actions:
            return (self.scope_actions[name],)
        otype = policy.object_type(self.model)
        permissions = getattr(func, "allowed_permissions", None) or ("change",)
        if otype is None:
            return (policy.ADMINISTER,)
        needed = []
        for permission in permissions:
            action = otype.permissions.get(permission)
            if action is None:
                return ()
            needed.append(action)
        return tuple(dict.fromkeys(needed))

    def get_actions(self, request):
        actions = super().get_actions(request)
        scoped = {}
        for name, (func, action_name, description) in actions.items():
            needed = self._policy_actions_for(name, func)
            if not needed or not all(policy.can(request.user, each, self.model) for each in needed):
                continue
            scoped[name] = (self._scoped_action(func, name, needed), action_name, description)
        return scoped

    def _scoped_action(self, func, name: str, needed: tuple[str, ...]):
        @functools.wraps(func)
        def action(modeladmin, request, queryset):
            allowed = queryset
            for each in needed:
                allowed = policy.scope(request.user, each, allowed)
            if queryset.exclude(pk__in=allowed.values("pk")).exists():
                modeladmin.message_user(
                    request, _("権限のない対象が含まれているため、この操作は行いませんでした。"), messages.ERROR
                )
                return None
            if policy.EXPORT in needed:
                modeladmin.record_export(request, name, queryset)
            return func(modeladmin, request, queryset)

        return action

    def record_export(self, request, name: str, queryset) -> None:
        ids = sorted(queryset.values_list("pk", flat=True))
        objects = list(queryset.model._default_manager.filter(pk__in=ids[:500]))
        departments = {policy.department_id_of(obj) for obj in objects}
        audit_record(
            actor=request.user,
            action=f"{self.opts.model_name}.{name}",
            department=departments.pop() if len(departments) == 1 else None,
            details={"ids": ids[:500], "count": len(ids)},
            request=request,
        )
