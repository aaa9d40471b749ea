"""Writes for the staff API: API tokens (one per staff user, rest_framework.authtoken)."""

from __future__ import annotations

from django.db import transaction
from rest_framework.authtoken.models import Token

from audit import actions
from audit.services import audit_record


@transaction.atomic
def api_token_create(*, user, actor) -> Token:
    """A new token for `user` (a previous one stops working)."""
    Token.objects.filter(user=user).delete()
    token = Token.objects.create(user=user)
    audit_record(actor=actor, action=actions.API_TOKEN_CREATE, obj=user, details={"user_id": user.pk})
    return token


@transaction.atomic
def api_token_revoke(*, token: Token, actor) -> None:
    user = token.user
    token.delete()
    audit_record(actor=actor, action=actions.API_TOKEN_REVOKE, obj=user, details={"user_id": user.pk})
