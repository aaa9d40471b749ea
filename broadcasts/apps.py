from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class BroadcastsConfig(AppConfig):
    name = "broadcasts"
    verbose_name = _("配信")

    def ready(self):
        from broadcasts import campaigns
        from broadcasts.richmenu import signals, taps  # noqa: F401 (signals: connects the receivers)
        from messaging.line import postback_routes

        postback_routes.register(taps.PREFIX, taps.tap_handle)
        for command in campaigns.ANSWER_COMMANDS:
            postback_routes.register_command(command, campaigns.campaign_postback_reply)
