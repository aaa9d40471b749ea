from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class IntegrationsConfig(AppConfig):
    name = "integrations"
    verbose_name = _("外部システム連携")

    def ready(self):
        from integrations import services
        from procedures.signals import application_status_changed, application_submitted

        application_submitted.connect(services.on_application_submitted, dispatch_uid="integrations.submitted")
        application_status_changed.connect(
            services.on_application_status_changed, dispatch_uid="integrations.status_changed"
        )
