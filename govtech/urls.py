from django.contrib import admin
from django.urls import include, path
from django.utils.translation import gettext_lazy as _
from django.views.generic import RedirectView

from govtech.health import health

admin.site.site_header = _("LINE 市役所 管理画面")
admin.site.site_title = _("LINE 市役所")
admin.site.index_title = _("管理メニュー")

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="procedures:simulator", permanent=False)),
    path("healthz", health, name="healthz"),
    path("admin/", admin.site.urls),
    path("accounts/", include("accounts.urls")),
    path("procedures/", include("procedures.urls")),
    path("line/", include("messaging.urls")),
    path("broadcasts/", include("broadcasts.urls")),
    # Short, because it is the address behind every web-link tile of the rich menu.
    path("m/", include("broadcasts.richmenu.urls")),
    path("api/v1/", include("api.urls")),
]
