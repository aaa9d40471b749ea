from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class MessagingConfig(AppConfig):
    name = "messaging"
    verbose_name = _("メッセージ")

    def ready(self):
        from messaging.services import notice_deliver
        from procedures.notices import deliverer_register

        # LINE is how procedures' personal notices (status changes) reach residents.
        deliverer_register(notice_deliver)
