from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ResidentsConfig(AppConfig):
    name = "residents"
    verbose_name = _("住民")

    def ready(self):
        from procedures.signals import application_resubmitted, application_submitted
        from residents import procedure_profile

        application_submitted.connect(
            procedure_profile.on_application_submitted, dispatch_uid="residents.profile_from_application"
        )
        application_resubmitted.connect(
            procedure_profile.on_application_resubmitted, dispatch_uid="residents.profile_from_correction"
        )
