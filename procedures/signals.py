"""Signals other apps listen to, so that procedures never import them (e.g. integrations' webhooks).

Both are sent inside the transaction of the change; a receiver that must act only once the change
is committed uses transaction.on_commit.

    application_submitted(sender=Application, application=…)          a new (real or test) application
    application_status_changed(sender=Application, application=…, change=ApplicationStatusChange)
    application_resubmitted(sender=Application, application=…, changed_keys=[…], at=datetime)
        the resident corrected the answers staff asked about; changed_keys are the steps whose
        answer differs from before
"""

from django.dispatch import Signal

application_submitted = Signal()
application_status_changed = Signal()
application_resubmitted = Signal()
