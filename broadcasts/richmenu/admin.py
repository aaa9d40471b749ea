"""The rich-menu admin: size and layout presets, tiles with their actions, the image (uploaded or
drawn from the tiles), a preview with the tiles outlined, deployment to LINE, tap statistics."""

from __future__ import annotations

import datetime as dt

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import FileResponse, Http404, HttpResponseRedirect, JsonResponse
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django_q.tasks import async_task

from broadcasts.richmenu import disaster, image, layout, linking, selectors, services
from broadcasts.richmenu.models import DisasterModeSwitch, RichMenu, RichMenuArea, RichMenuDeployment
from staff.mixins import ScopedAdminMixin

CUSTOM_SIZE = "custom"
STATS_DAYS = 30


class RichMenuForm(forms.ModelForm):
    size = forms.ChoiceField(
        label=gettext_lazy("大きさ"),
        choices=[(f"{w}x{h}", label) for (w, h), label in layout.SIZES.items()]
        + [(CUSTOM_SIZE, gettext_lazy("その他（幅・高さを入力）"))],
    )
    image_upload = forms.FileField(
        label=gettext_lazy("画像をアップロード"),
        required=False,
        help_text=gettext_lazy("JPEG または PNG、1MB 以下、メニューと同じ大きさ。タイルから作成することもできます。"),
    )

    class Meta:
        model = RichMenu
        fields = [
            "name",
            "role",
            "segment",
            "priority",
            "size",
            "width",
            "height",
            "chat_bar_text",
            "opens_by_default",
            "alias_id",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        current = (self.instance.width, self.instance.height)
        self.fields["size"].initial = f"{current[0]}x{current[1]}" if current in layout.SIZES else CUSTOM_SIZE
        self.fields["width"].required = self.fields["height"].required = False

    def clean(self):
        data = super().clean()
        size = data.get("size")
        if size and size != CUSTOM_SIZE:
            data["width"], data["height"] = (int(part) for part in size.split("x"))
            self.instance.width, self.instance.height = data["width"], data["height"]
        problems = layout.size_problems(data.get("width") or 0, data.get("height") or 0)
        if problems:
            raise ValidationError(problems)
        if data.get("role") == RichMenu.Role.SEGMENT and not data.get("segment"):
            self.add_error("segment", _("セグメント向けのメニューにはセグメントを選んでください。"))
        upload = data.get("image_upload")
        if upload:
            if upload.size > image.MAX_BYTES:
                self.add_error("image_upload", _("画像は 1MB 以下にしてください。"))
            else:
                try:
                    image.image_check(upload.read(), width=data["width"], height=data["height"])
                except image.ImageRejected as rejected:
                    self.add_error("image_upload", rejected.problems)
                upload.seek(0)
        return data


class AreaForm(forms.ModelForm):
    uri = forms.URLField(label=gettext_lazy("URL"), max_length=1000, required=False, assume_scheme="https")

    class Meta:
        model = RichMenuArea
        fields = [
            "position", "label", "x", "y", "width", "height", "background", "foreground", "icon",
            "action_type", "procedure", "uri", "text", "datetime_mode", "switch_to",
        ]  # fmt: skip

    def clean_icon(self):
        icon = self.cleaned_data.get("icon")
        if icon and hasattr(icon, "read") and not isinstance(icon, str) and getattr(icon, "_committed", False) is False:
            try:
                image.icon_check(icon.read())
            except image.ImageRejected as rejected:
                raise ValidationError(rejected.problems) from None
            finally:
                icon.seek(0)
        return icon


class AreaFormSet(forms.BaseInlineFormSet):
    def clean(self):
        super().clean()
        if any(self.errors):
            return
        kept = [form for form in self.forms if form.cleaned_data and not form.cleaned_data.get("DELETE")]
        areas = [
            (
                form.cleaned_data.get("label") or "?",
                layout.Bounds(*(form.cleaned_data.get(name) or 0 for name in ("x", "y", "width", "height"))),
            )
            for form in kept
        ]
        problems = layout.areas_problems(self.instance.width, self.instance.height, areas) if kept else []
        for form in kept:
            problems += services.area_action_problems(
                RichMenuArea(**{k: v for k, v in form.cleaned_data.items() if k not in ("DELETE", "id", "menu")})
            )
        if problems:
            raise ValidationError(problems)


class RichMenuAreaInline(ScopedAdminMixin, admin.StackedInline):
    model = RichMenuArea
    form = AreaForm
    formset = AreaFormSet
    extra = 0
    fk_name = "menu"
    fieldsets = [
        (
            None,
            {"fields": [("position", "label"), ("x", "y", "width", "height"), ("background", "foreground", "icon")]},
        ),
        (
            gettext_lazy("タップしたとき"),
            {"fields": ["action_type", "procedure", "uri", "text", "datetime_mode", "switch_to"]},
        ),
    ]


@admin.register(RichMenu)
class RichMenuAdmin(ScopedAdminMixin, admin.ModelAdmin):
    form = RichMenuForm
    inlines = [RichMenuAreaInline]
    change_form_template = "admin/broadcasts/richmenu/change_form.html"
    change_list_template = "admin/broadcasts/richmenu/change_list.html"
    list_display = ["name", "role", "segment", "size_label", "deployed_at", "changed_since_deploy"]
    list_filter = ["role"]
    readonly_fields = ["preview", "line_rich_menu_id", "deployed_at", "changed_since_deploy"]
    scope_object_views = {
        "generate_image": "change",
        "layout": "change",
        "deploy": "change",
        "image": "view",
        "stats": "view",
    }

    def get_fieldsets(self, request, obj=None):
        settings_fields = [
            "name",
            "role",
            "segment",
            "priority",
            "size",
            ("width", "height"),
            "chat_bar_text",
            "opens_by_default",
            "alias_id",
        ]
        fieldsets = [(None, {"fields": settings_fields}), (_("画像"), {"fields": ["image_upload"]})]
        if obj is not None:
            fieldsets.append(
                (
                    _("プレビューと反映"),
                    {"fields": ["preview", "line_rich_menu_id", "deployed_at", "changed_since_deploy"]},
                )
            )
        return fieldsets

    @admin.display(description=gettext_lazy("大きさ"))
    def size_label(self, menu):
        return layout.SIZES.get((menu.width, menu.height), f"{menu.width}×{menu.height}")

    @admin.display(description=gettext_lazy("プレビュー"))
    def preview(self, menu):
        return render_to_string("admin/broadcasts/richmenu/preview.html", _preview_context(menu))

    def save_model(self, request, obj, form, change):
        obj.changed_since_deploy = True
        super().save_model(request, obj, form, change)
        upload = form.cleaned_data.get("image_upload")
        if upload:
            services.rich_menu_image_upload(menu=obj, data=upload.read(), filename=upload.name)

    def get_urls(self):
        def view(function, suffix):
            return path(
                f"<int:object_id>/{suffix.replace('_', '-')}/",
                self.admin_site.admin_view(function),
                name=f"broadcasts_richmenu_{suffix}",
            )

        return [
            path("disaster/", self.admin_site.admin_view(self.disaster_view), name="broadcasts_richmenu_disaster"),
            path(
                "disaster/<int:switch_id>/progress/",
                self.admin_site.admin_view(self.disaster_progress_view),
                name="broadcasts_richmenu_disaster_progress",
            ),
            view(self.layout_view, "layout"),
            view(self.generate_image_view, "generate_image"),
            view(self.deploy_view, "deploy"),
            view(self.image_view, "image"),
            view(self.stats_view, "stats"),
        ] + super().get_urls()

    def changelist_view(self, request, extra_context=None):
        extra = {"disaster_menu": linking.disaster_mode_menu(), **(extra_context or {})}
        return super().changelist_view(request, extra)

    def disaster_view(self, request):
        """Switch every resident to the disaster menu, or back: a confirmation, then the progress."""
        if not self.has_change_permission(request):
            raise PermissionDenied
        current = linking.disaster_mode_menu()
        latest = linking.disaster_mode_switch_latest()
        direction = DisasterModeSwitch.Direction.OFF if current else DisasterModeSwitch.Direction.ON
        menus = RichMenu.objects.filter(role=RichMenu.Role.DISASTER)
        error = ""
        if request.method == "POST" and request.POST.get("retry") and latest is not None:
            direction = latest.direction  # the failed switch again: it goes on from where LINE is
        if request.method == "POST":
            menu_id = current.pk if current else request.POST.get("menu", "")
            if request.POST.get("confirm") != "yes":
                error = _("確認のチェックを入れてください。")
            elif not str(menu_id).isdigit():
                error = _("災害時メニューを選んでください。")
            else:
                try:
                    switch = disaster.disaster_mode_switch(
                        direction=direction, menu_id=int(menu_id), actor=request.user, now=timezone.now()
                    )
                except disaster.DisasterModeProblem as problem:
                    error = str(problem)
                else:
                    return HttpResponseRedirect(f"{reverse('admin:broadcasts_richmenu_disaster')}?switch={switch.pk}")
        switch_id = request.GET.get("switch", "")
        switch = DisasterModeSwitch.objects.filter(pk=int(switch_id)).first() if switch_id.isdigit() else None
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("災害モード"),
            "current": current,
            "direction": direction,
            "menus": menus,
            "error": error,
            "switch": switch,
            "failed": latest if latest is not None and latest.status == DisasterModeSwitch.Status.FAILED else None,
            "recent": DisasterModeSwitch.objects.select_related("menu", "actor")[:10],
        }
        return TemplateResponse(request, "admin/broadcasts/richmenu/disaster.html", context)

    def disaster_progress_view(self, request, switch_id: int):
        if not self.has_view_permission(request):
            raise PermissionDenied
        switch = DisasterModeSwitch.objects.filter(pk=switch_id).first()
        if switch is None:
            raise Http404
        return JsonResponse(disaster.disaster_mode_progress(switch))

    def _menu(self, request, object_id) -> RichMenu:
        menu = self.get_object(request, unquote(str(object_id)))
        if menu is None:
            raise Http404
        return menu

    def _back(self, menu: RichMenu) -> HttpResponseRedirect:
        return HttpResponseRedirect(reverse("admin:broadcasts_richmenu_change", args=[menu.pk]))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        menu = self.get_object(request, unquote(object_id))
        extra = dict(extra_context or {})
        if menu is not None:
            extra.update(
                presets=layout.presets_for(menu.width, menu.height),
                problems=services.rich_menu_problems(menu),
                deployments=menu.deployments.select_related("actor")[:10],
            )
        return super().change_view(request, object_id, form_url, extra)

    def layout_view(self, request, object_id):
        menu = self._menu(request, object_id)
        if request.method == "POST":
            try:
                services.rich_menu_layout_apply(menu=menu, preset_key=request.POST.get("preset", ""))
                messages.success(
                    request, _("レイアウトを適用しました。タイルの位置を確かめて、画像を作り直してください。")
                )
            except services.RichMenuProblem as problem:
                messages.error(request, " ".join(problem.problems))
        return self._back(menu)

    def generate_image_view(self, request, object_id):
        menu = self._menu(request, object_id)
        if request.method == "POST":
            try:
                services.rich_menu_image_generate(menu=menu)
                messages.success(request, _("タイルから画像を作成しました。"))
            except (services.RichMenuProblem, image.ImageRejected) as problem:
                messages.error(request, " ".join(problem.problems))
        return self._back(menu)

    def deploy_view(self, request, object_id):
        menu = self._menu(request, object_id)
        problems = services.rich_menu_problems(menu)
        if request.method == "POST" and not problems:
            menu_id, actor_id = menu.pk, request.user.pk
            transaction.on_commit(
                lambda: async_task("broadcasts.richmenu.tasks.rich_menu_deploy_task", menu_id, actor_id)
            )
            messages.success(request, _("LINE への反映を開始しました。結果は反映履歴に表示されます。"))
            return self._back(menu)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "menu": menu,
            "subpage_object": menu,
            "problems": problems,
            "title": _("LINE に反映"),
            "preview": self.preview(menu),
        }
        return TemplateResponse(request, "admin/broadcasts/richmenu/deploy_confirm.html", context)

    def image_view(self, request, object_id):
        menu = self._menu(request, object_id)
        if not menu.image:
            raise Http404
        return FileResponse(menu.image.open("rb"), content_type=menu.image_content_type or "application/octet-stream")

    def stats_view(self, request, object_id):
        menu = self._menu(request, object_id)
        last_day = timezone.localdate()
        table = selectors.rich_menu_tap_table(
            menu=menu, first_day=last_day - dt.timedelta(days=STATS_DAYS - 1), last_day=last_day
        )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "menu": menu,
            "subpage_object": menu,
            "title": _("タップ数"),
            **table,
        }
        return TemplateResponse(request, "admin/broadcasts/richmenu/stats.html", context)


def _preview_context(menu: RichMenu) -> dict:
    areas = [
        {
            "label": area.label,
            "action": area.get_action_type_display(),
            "target": _action_target(area),
            "left": 100 * area.x / menu.width,
            "top": 100 * area.y / menu.height,
            "width": 100 * area.width / menu.width,
            "height": 100 * area.height / menu.height,
        }
        for area in menu.areas.select_related("procedure", "switch_to")
    ]
    image_url = reverse("admin:broadcasts_richmenu_image", args=[menu.pk]) if menu.image else ""
    return {"menu": menu, "areas": areas, "image_url": image_url, "ratio": 100 * menu.height / menu.width}


def _action_target(area: RichMenuArea) -> str:
    kind = RichMenuArea.ActionType
    if area.action_type == kind.PROCEDURE:
        return area.procedure.name if area.procedure else ""
    if area.action_type == kind.SWITCH:
        return area.switch_to.name if area.switch_to else ""
    if area.action_type == kind.URI:
        return area.uri
    return area.text


@admin.register(RichMenuDeployment)
class RichMenuDeploymentAdmin(ScopedAdminMixin, admin.ModelAdmin):
    """The deploy history: read-only, written by deploy.py."""

    list_display = ["menu", "status", "started_at", "finished_at", "actor", "line_rich_menu_id"]
    list_filter = ["status"]
    readonly_fields = [field.name for field in RichMenuDeployment._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
