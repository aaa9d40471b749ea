from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = _("監査ログ")

    def ready(self):
        from audit import db, receivers  # noqa: F401  (connects the signal receivers)

        db.connect()
