"""Unlocking a login and resetting the second factor, as actions on the staff account list.

The staff account admin (staff/admin.py) is extended here rather than edited, and django-otp's
own device admin is removed: it shows secret keys and does not go through staff/policy.py.
Both actions need `administer` (system administrators), checked by ScopedAdminMixin and again
by the services.
"""

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import services
from staff.admin import StaffUserAdmin

User = get_user_model()


class AccountUserAdmin(StaffUserAdmin):
    actions = [*(StaffUserAdmin.actions or ()), "unlock_login", "reset_two_factor"]

    @admin.action(description=gettext_lazy("ログイン停止を解除する"), permissions=["change"])
    def unlock_login(self, request, queryset):
        for user in queryset:
            services.login_unlock(actor=request.user, user=user, request=request)
        self.message_user(
            request, _("%(count)d 人のログイン停止を解除しました。") % {"count": len(queryset)}, messages.SUCCESS
        )

    @admin.action(description=gettext_lazy("二段階認証をリセットする（次のログインで登録し直し）"), permissions=["change"])
    def reset_two_factor(self, request, queryset):
        for user in queryset:
            services.otp_reset(actor=request.user, user=user, request=request)
        self.message_user(
            request,
            _("%(count)d 人の二段階認証をリセットしました。次のログインで認証アプリを登録し直します。")
            % {"count": len(queryset)},
            messages.SUCCESS,
        )


admin.site.unregister(User)
admin.site.register(User, AccountUserAdmin)
if admin.site.is_registered(TOTPDevice):
    admin.site.unregister(TOTPDevice)
