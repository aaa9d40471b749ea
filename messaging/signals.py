"""What the LINE channel tells other apps, so it never imports them."""

from django.dispatch import Signal

# A LINE user followed (or unblocked) the account; sent inside the transaction that records it,
# with `line_user` (messaging.models.LineUser). Receivers that start work defer it to on_commit.
line_user_followed = Signal()
