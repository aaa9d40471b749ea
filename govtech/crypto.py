"""Residents' answers encrypted at rest.

`EncryptedJSONField` keeps a JSON value in a text column as an AES-256-GCM token and decrypts it
when a row is loaded, so code that reads and writes the model attribute sees plain Python values.
The keys come from `settings.ENCRYPTION_KEYS` (env GOVTECH_ENCRYPTION_KEYS, 32 url-safe base64
bytes each, the format `Fernet.generate_key()` prints): the first one encrypts, every one
decrypts, so a new key can be put in front of the old one and the rows re-encrypted later with
`manage.py rotate_encryption_keys` (docs/operations.md).

A token is `g1.<key id>.<base64 of nonce + ciphertext + tag>`: the key id (first bytes of the
key's SHA-256) picks the key without trial decryption. AES-GCM rather than Fernet because the
auditors' export decrypts two values per application: Fernet cost ~50 µs a value, which tripled
the 100k-row export (bench/export.py); AES-GCM is one OpenSSL call of a few µs.

The database cannot look inside these columns: filtering, ordering or indexing on an answer is
refused (only `isnull` is allowed), and anything reading them with raw SQL sees tokens.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django import forms
from django.conf import settings
from django.core import exceptions
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.db import models, transaction
from django.db.models.fields.mixins import CheckFieldDefaultMixin
from django.dispatch import receiver
from django.utils.translation import gettext_lazy as _

SETTING = "GOVTECH_ENCRYPTION_KEYS"


class UndecryptableValue(ImproperlyConfigured):
    """A stored value that no configured key opens: almost always a key removed too early."""


TOKEN_VERSION = "g1"  # noqa: S105 (a format marker, not a secret)
NONCE_BYTES = 12


@dataclass(frozen=True)
class _Key:
    id: str
    cipher: AESGCM


def _key_id(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()[:8]


@cache
def _keys() -> tuple[_Key, dict[str, _Key]]:
    keys = list(settings.ENCRYPTION_KEYS)
    if not keys:
        raise ImproperlyConfigured(f"{SETTING} is empty: residents' answers can be neither stored nor read.")
    loaded = []
    for key in keys:
        raw = base64.urlsafe_b64decode(key)
        loaded.append(_Key(id=_key_id(raw), cipher=AESGCM(raw)))
    return loaded[0], {key.id: key for key in reversed(loaded)}


@receiver(setting_changed)
def _forget_keys(*, setting, **kwargs):
    if setting == "ENCRYPTION_KEYS":
        _keys.cache_clear()


def _seal(key: _Key, data: bytes) -> str:
    nonce = os.urandom(NONCE_BYTES)
    sealed = base64.urlsafe_b64encode(nonce + key.cipher.encrypt(nonce, data, None)).decode("ascii")
    return f"{TOKEN_VERSION}.{key.id}.{sealed}"


def encrypt(text: str) -> str:
    return _seal(_keys()[0], text.encode("utf-8"))


def _undecryptable(where: str) -> UndecryptableValue:
    return UndecryptableValue(
        f"{where}: a stored value cannot be decrypted with any key in {SETTING}. It was encrypted with "
        f"a key that is no longer listed (put it back after the current one), or it is damaged. "
        f"See docs/operations.md."
    )


def _open(token: str, *, where: str) -> tuple[_Key, bytes]:
    try:
        version, key_id, sealed = token.split(".", 2)
        key = _keys()[1].get(key_id) if version == TOKEN_VERSION else None
        if key is None:
            raise _undecryptable(where)
        data = base64.urlsafe_b64decode(sealed)
        return key, key.cipher.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], None)
    except (InvalidTag, ValueError, TypeError):
        raise _undecryptable(where) from None


def decrypt(token: str, *, where: str) -> str:
    try:
        return _open(token, where=where)[1].decode("utf-8")
    except UnicodeDecodeError:
        raise _undecryptable(where) from None


def reencrypted(token: str, *, where: str) -> str | None:
    """The token encrypted with the first key, or None when it already is."""
    primary = _keys()[0]
    key, data = _open(token, where=where)
    return None if key.id == primary.id else _seal(primary, data)


class EncryptedJSONField(CheckFieldDefaultMixin, models.TextField):
    """A JSON value stored as an AES-GCM token; reads and writes see the plain value."""

    description = _("暗号化された JSON")
    empty_strings_allowed = False
    default_error_messages = {"invalid": _("JSON として保存できない値です。")}
    _default_hint = ("dict", "{}")
    where = "EncryptedJSONField"  # how errors name the column; "app.Model.field" once on a model

    def contribute_to_class(self, cls, name, *args, **kwargs):
        super().contribute_to_class(cls, name, *args, **kwargs)
        # Named once here, not for every value read (an export reads 200k of them).
        self.where = f"{cls._meta.label}.{name}"

    def from_db_value(self, value, expression, connection):
        if value is None:
            return None
        return json.loads(decrypt(value, where=self.where))

    def to_python(self, value):
        return value

    def get_prep_value(self, value):
        if value is None:
            return None
        return encrypt(json.dumps(value, ensure_ascii=False, separators=(",", ":")))

    def get_lookup(self, lookup_name):
        # Tokens are randomised: any comparison but IS NULL would silently match nothing.
        return super().get_lookup(lookup_name) if lookup_name == "isnull" else None

    def get_transform(self, name):
        return None

    def validate(self, value, model_instance):
        super().validate(value, model_instance)
        try:
            json.dumps(value)
        except TypeError:
            raise exceptions.ValidationError(self.error_messages["invalid"], code="invalid", params={"value": value}) from None

    def value_to_string(self, obj):
        return self.value_from_object(obj)

    def formfield(self, **kwargs):
        return super().formfield(**{"form_class": forms.JSONField, **kwargs})


def encrypted_fields() -> Iterator[tuple[type[models.Model], list[str]]]:
    """Every concrete model with encrypted columns, and their names."""
    from django.apps import apps

    for model in apps.get_models():
        names = [field.attname for field in model._meta.concrete_fields if isinstance(field, EncryptedJSONField)]
        if names and not model._meta.proxy:
            yield model, names


@dataclass
class RotationCount:
    rows: int = 0
    values: int = 0
    reencrypted: int = 0


def rotate_model(model: type[models.Model], names: list[str], *, batch_size: int = 500) -> RotationCount:
    """Re-encrypt `names` of every row of `model` with the first key, a batch per transaction.

    Rows are locked while read and rewritten, so a concurrent save is never overwritten with the
    older value; values already on the first key are left alone (running it again does nothing).
    """
    raw = {name: models.ExpressionWrapper(models.F(name), output_field=models.TextField()) for name in names}
    count = RotationCount()
    last_pk = None
    manager = model._base_manager
    while True:
        with transaction.atomic():
            rows = manager.select_for_update().order_by("pk")
            if last_pk is not None:
                rows = rows.filter(pk__gt=last_pk)
            batch = list(rows.annotate(**{f"_token_{name}": wrapper for name, wrapper in raw.items()})
                         .values_list("pk", *(f"_token_{name}" for name in names))[:batch_size])
            for pk, *tokens in batch:
                changes = {}
                for name, token in zip(names, tokens, strict=True):
                    if token is None:
                        continue
                    count.values += 1
                    new = reencrypted(token, where=f"{model._meta.label}.{name} (pk={pk})")
                    if new is not None:
                        changes[name] = models.Value(new, output_field=models.TextField())
                if changes:
                    manager.filter(pk=pk).update(**changes)
                    count.reencrypted += len(changes)
            count.rows += len(batch)
        if len(batch) < batch_size:
            return count
        last_pk = batch[-1][0]


def copy_columns(model: type[models.Model], pairs: dict[str, str], *, missing_only: bool, batch_size: int = 500) -> int:
    """Copy each source field of `pairs` to its target field, a batch of rows per transaction.

    The migrations that move a column to an encrypted one (add nullable, fill, switch) use it both
    ways with their historical models. `missing_only` copies only rows whose targets are still NULL,
    so filling again after an interruption, or for rows written meanwhile, redoes nothing.
    Returns the number of rows copied.
    """
    rows = model._base_manager.order_by("pk").only("pk", *pairs)
    if missing_only:
        missing = models.Q()
        for target in pairs.values():
            missing |= models.Q(**{f"{target}__isnull": True})
        rows = rows.filter(missing)
    copied = 0
    last_pk = None
    while True:
        with transaction.atomic():
            batch = list((rows if last_pk is None else rows.filter(pk__gt=last_pk))[:batch_size])
            for row in batch:
                for source, target in pairs.items():
                    setattr(row, target, getattr(row, source))
            model._base_manager.bulk_update(batch, list(pairs.values()))
        copied += len(batch)
        if len(batch) < batch_size:
            return copied
        last_pk = batch[-1].pk
