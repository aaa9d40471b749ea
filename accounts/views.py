"""The second login step for staff (a TOTP one-time code), its enrolment, and the lockout page."""

from __future__ import annotations

import math
from base64 import b32encode
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from accounts import selectors, services
from accounts.forms import CodeForm
from accounts.qr import svg_data_uri

LOCKOUT_STATUS = 429


def _next(request) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return target
    return reverse("admin:index")


def _page(request, template: str, title: str, form, **context):
    return render(request, template, {"title": title, "form": form, "next": _next(request), **context})


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def otp_verify(request):
    if not selectors.needs_second_factor(request.user):
        return redirect(_next(request))
    device = selectors.confirmed_device(request.user)
    if device is None:
        return redirect(f"{reverse('accounts:otp_setup')}?{urlencode({'next': _next(request)})}")
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        username = request.user.get_username()
        outcome = services.otp_check(request=request, device=device, token=form.cleaned_data["token"])
        if outcome is services.CodeCheck.PASSED:
            return redirect(_next(request))
        if outcome is services.CodeCheck.LOCKED_OUT:
            return lockout(request, None, {"username": username})
        if outcome is services.CodeCheck.TOO_SOON:
            form.add_error("token", _("確認コードを続けて間違えたため、数秒待ってから、そのとき表示されているコードを入力してください。"))
        else:
            form.add_error(
                "token",
                _("確認コードが違います。認証アプリに今表示されている6桁の数字を入力してください（コードは30秒ごとに変わります）。"),
            )
    return _page(request, "accounts/otp_verify.html", _("二段階認証"), form)


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def otp_setup(request):
    if not selectors.is_staff_account(request.user) or selectors.confirmed_device(request.user) is not None:
        # Enrolled already: a new device only after a system administrator reset the old one.
        return redirect(f"{reverse('accounts:otp_verify')}?{urlencode({'next': _next(request)})}")
    device = services.otp_device_pending(user=request.user)
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if services.otp_enrol(request=request, device=device, token=form.cleaned_data["token"]):
            return redirect(_next(request))
        form.add_error(
            "token",
            _("確認コードが違います。QR コードを読み取ったアプリに今表示されている6桁の数字を入力してください。"
              "時刻がずれているとコードが合わないので、スマートフォンの時刻が自動設定になっているかも確かめてください。"),
        )
    key = b32encode(device.bin_key).decode("ascii")
    return _page(
        request,
        "accounts/otp_setup.html",
        _("二段階認証の登録"),
        form,
        qr_data_uri=svg_data_uri(device.config_url),
        key=" ".join(key[i : i + 4] for i in range(0, len(key), 4)),
    )


def lockout(request, original_response=None, credentials=None):
    """django-axes' AXES_LOCKOUT_CALLABLE: what to do now, in Japanese, with status 429."""
    minutes = math.ceil(settings.AXES_COOLOFF_TIME.total_seconds() / 60)
    context = {"title": _("ログインを一時停止しています"), "failure_limit": settings.AXES_FAILURE_LIMIT, "cooloff_minutes": minutes}
    return render(request, "accounts/lockout.html", context, status=LOCKOUT_STATUS)
