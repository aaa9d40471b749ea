"""Staff pass a one-time code after the password before anything else (settings.STAFF_REQUIRE_2FA).

Placed after django_otp's OTPMiddleware. A staff member who logged in with the password only is
sent to the code page (or to enrolment when there is no device yet) from every page of the site,
the admin, the simulators, the exports and the staff API's session login alike; only the login
pages themselves, logout and static files stay open.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpResponseForbidden, JsonResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.translation import gettext as _

from accounts.selectors import needs_second_factor


def _open_paths() -> tuple[str, ...]:
    static = "/" + settings.STATIC_URL.lstrip("/")
    return (reverse("accounts:otp_verify"), reverse("accounts:otp_setup"), reverse("admin:logout"), static)


class StaffTwoFactorMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if settings.STAFF_REQUIRE_2FA and needs_second_factor(request.user):
            if not request.path_info.startswith(_open_paths()):
                return self._refuse(request)
        return self.get_response(request)

    @staticmethod
    def _refuse(request):
        if request.method in ("GET", "HEAD"):
            query = urlencode({"next": request.get_full_path()})
            return redirect(f"{reverse('accounts:otp_verify')}?{query}")
        message = _("二段階認証が済んでいません。ページを開き直し、認証アプリの確認コードを入力してください。")
        if "json" in request.content_type or "json" in request.headers.get("Accept", ""):
            return JsonResponse({"error": message}, status=403)
        return HttpResponseForbidden(message)
