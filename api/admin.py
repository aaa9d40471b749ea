"""API tokens in the admin: each staff user issues and deletes their own; a system administrator anyone's."""

from django import forms
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.utils.translation import gettext as _
from rest_framework.authtoken.admin import TokenAdmin
from rest_framework.authtoken.models import TokenProxy

from api.services import api_token_create, api_token_revoke
from staff import policy


def _may_hold_token(user) -> bool:
    # A token only ever reaches what the policy lets its user reach; a user without any role needs none.
    return bool(policy.roles(user))


def _manages_everyone(user) -> bool:
    return policy.can(user, policy.ADMINISTER, get_user_model())


if admin.site.is_registered(TokenProxy):
    admin.site.unregister(TokenProxy)


@admin.register(TokenProxy)
class ApiTokenAdmin(TokenAdmin):
    list_display = ("user", "created", "key")
    readonly_fields = ("key", "created")

    def get_queryset(self, request):
        queryset = super().get_queryset(request).select_related("user")
        if _manages_everyone(request.user):
            return queryset
        return queryset.filter(user_id=request.user.pk)

    def get_fields(self, request, obj=None):
        return ("user",) if obj is None else ("user", "key", "created")

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "user":
            users = get_user_model().objects.filter(is_active=True, is_staff=True)
            if not _manages_everyone(request.user):
                users = users.filter(pk=request.user.pk)
                kwargs["initial"] = request.user.pk
            kwargs["queryset"] = users
            kwargs["widget"] = forms.Select
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_form(self, request, obj=None, change=False, **kwargs):
        kwargs["help_texts"] = {"user": _("トークンを使う職員。新しく発行すると、その職員の前のトークンは使えなくなります。")}
        return super().get_form(request, obj, change, **kwargs)

    def has_module_permission(self, request):
        return _may_hold_token(request.user)

    def has_view_permission(self, request, obj=None):
        return _may_hold_token(request.user) and (
            obj is None or obj.user_id == request.user.pk or _manages_everyone(request.user)
        )

    def has_add_permission(self, request):
        return _may_hold_token(request.user)

    def has_change_permission(self, request, obj=None):
        return False  # a token is issued or deleted, never edited

    def has_delete_permission(self, request, obj=None):
        return self.has_view_permission(request, obj)

    def save_model(self, request, obj, form, change):
        token = api_token_create(user=form.cleaned_data["user"], actor=request.user)
        obj.key, obj.created = token.key, token.created

    def delete_model(self, request, obj):
        api_token_revoke(token=obj, actor=request.user)

    def delete_queryset(self, request, queryset):
        for token in queryset:
            api_token_revoke(token=token, actor=request.user)
