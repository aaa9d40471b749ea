"""Residents' answers are encrypted at rest (govtech/crypto.py) and the keys can be rotated."""

import io
import re
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import FieldError, ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.test import override_settings

from govtech.crypto import SETTING, EncryptedJSONField, UndecryptableValue, copy_columns, encrypted_fields
from govtech.env import env_fernet_keys
from messaging import services as messaging_services
from messaging.models import InboxEvent, OutboxMessage
from messaging.tests.test_webhook import text_event
from procedures.models import Application, ConversationSession
from procedures.tests.factories import ApplicationFactory
from tests.test_settings import clean_env, production_env, run_code

ROOT = Path(__file__).resolve().parent.parent
KEY_A = Fernet.generate_key().decode()
KEY_B = Fernet.generate_key().decode()
ANSWERS = {"name": "山田花子", "address": "千代田区霞が関1-1", "count": 3}
LINE_USER = "U" + "e" * 32


def raw(table: str, column: str, pk: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT "{column}" FROM "{table}" WHERE id = %s', [pk])  # noqa: S608 - names are ours
        return cursor.fetchone()[0]


def assert_is_token(value: str, *secrets: str) -> None:
    assert value.startswith("g1."), value[:20]
    for secret in secrets:
        assert secret not in value


# --------------------------------------------------------------------------
# At rest: tokens in the database, plain values through the models
# --------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_applications_answers_are_stored_encrypted_and_read_back_plain():
    application = ApplicationFactory(answers=ANSWERS, computed={"fee": 1200})

    assert_is_token(raw("procedures_application", "answers", application.pk), "山田", "霞が関", "name")
    assert_is_token(raw("procedures_application", "computed", application.pk), "1200", "fee")
    loaded = Application.objects.get(pk=application.pk)
    assert (loaded.answers, loaded.computed) == (ANSWERS, {"fee": 1200})
    assert Application.objects.values_list("answers", flat=True).get(pk=application.pk) == ANSWERS


@pytest.mark.django_db
def test_a_conversations_state_is_stored_encrypted():
    session = ConversationSession.objects.create(line_user_id=LINE_USER, state={"answers": ANSWERS})

    assert_is_token(raw("procedures_conversationsession", "state", session.pk), "山田")
    session.refresh_from_db()
    assert session.state == {"answers": ANSWERS}


@pytest.mark.django_db
def test_what_a_resident_types_is_encrypted_in_the_inbox_and_the_outbox():
    event = text_event(LINE_USER, "山田花子です")
    messaging_services.inbox_store(events=[event])
    inbox = InboxEvent.objects.get(webhook_event_id=event["webhookEventId"])
    outbox = OutboxMessage.objects.create(
        line_user_id=LINE_USER, kind=OutboxMessage.Kind.PUSH, payload=[{"type": "text", "text": "お名前：山田花子"}],
        next_attempt_at="2026-04-01T09:00:00+09:00",
    )

    assert_is_token(raw("messaging_inboxevent", "payload", inbox.pk), "山田")
    assert_is_token(raw("messaging_outboxmessage", "payload", outbox.pk), "山田")
    assert InboxEvent.objects.get(pk=inbox.pk).payload["message"]["text"] == "山田花子です"
    assert OutboxMessage.objects.get(pk=outbox.pk).payload[0]["text"] == "お名前：山田花子"


def test_every_column_holding_answers_is_encrypted():
    encrypted = {model._meta.label: set(names) for model, names in encrypted_fields()}
    assert encrypted["procedures.Application"] >= {"answers", "computed"}
    assert encrypted["procedures.ConversationSession"] == {"state"}
    assert encrypted["messaging.InboxEvent"] == {"payload"}
    assert encrypted["messaging.OutboxMessage"] == {"payload"}


@pytest.mark.django_db
def test_the_database_cannot_be_asked_about_an_encrypted_answer():
    # Tokens are randomised: a lookup would match nothing, silently. It is refused instead.
    with pytest.raises(FieldError):
        list(Application.objects.filter(answers__name="山田花子"))
    with pytest.raises(FieldError):
        list(Application.objects.filter(answers=ANSWERS))
    assert not Application.objects.filter(answers__isnull=True).exists()


def test_the_same_answers_never_give_the_same_token():
    field = EncryptedJSONField()
    assert field.get_prep_value(ANSWERS) != field.get_prep_value(ANSWERS)


# --------------------------------------------------------------------------
# Keys: rotation, wrong and missing keys
# --------------------------------------------------------------------------


@pytest.mark.django_db
def test_rotation_makes_old_rows_readable_with_the_new_key_alone():
    with override_settings(ENCRYPTION_KEYS=[KEY_A]):
        application = ApplicationFactory(answers=ANSWERS)
        session = ConversationSession.objects.create(line_user_id=LINE_USER, state={"step": "name"})
    token_a = raw("procedures_application", "answers", application.pk)

    with override_settings(ENCRYPTION_KEYS=[KEY_B, KEY_A]):
        assert Application.objects.get(pk=application.pk).answers == ANSWERS  # the new key in front, old rows readable
        out = io.StringIO()
        call_command("rotate_encryption_keys", "--batch-size", "1", stdout=out)
        assert "procedures.Application (answers, computed): 1 rows, 2 values, 2 re-encrypted" in out.getvalue()
        assert "procedures.ConversationSession (state): 1 rows, 1 values, 1 re-encrypted" in out.getvalue()
        again = io.StringIO()
        call_command("rotate_encryption_keys", stdout=again)
        assert "done: 0 values re-encrypted" in again.getvalue()

    assert raw("procedures_application", "answers", application.pk) != token_a
    with override_settings(ENCRYPTION_KEYS=[KEY_B]):
        assert Application.objects.get(pk=application.pk).answers == ANSWERS
        assert ConversationSession.objects.get(pk=session.pk).state == {"step": "name"}
    with override_settings(ENCRYPTION_KEYS=[KEY_A]), pytest.raises(UndecryptableValue):
        Application.objects.get(pk=application.pk)


@pytest.mark.django_db
def test_a_row_no_key_opens_is_an_error_naming_the_setting_and_the_column():
    with override_settings(ENCRYPTION_KEYS=[KEY_A]):
        application = ApplicationFactory(answers=ANSWERS)

    with override_settings(ENCRYPTION_KEYS=[KEY_B]), pytest.raises(UndecryptableValue) as caught:
        Application.objects.get(pk=application.pk)
    message = str(caught.value)
    assert SETTING in message and "procedures.Application.answers" in message
    assert isinstance(caught.value, ImproperlyConfigured) and caught.value.__cause__ is None
    assert "山田" not in message


@pytest.mark.django_db
def test_rotation_stops_with_the_setting_named_when_a_key_is_missing():
    with override_settings(ENCRYPTION_KEYS=[KEY_A]):
        application = ApplicationFactory(answers=ANSWERS)

    with override_settings(ENCRYPTION_KEYS=[KEY_B]), pytest.raises(CommandError, match=SETTING) as caught:
        call_command("rotate_encryption_keys", stdout=io.StringIO())
    assert f"procedures.Application.answers (pk={application.pk})" in str(caught.value)


@pytest.mark.django_db
def test_no_key_at_all_is_an_error_naming_the_setting():
    with override_settings(ENCRYPTION_KEYS=[]), pytest.raises(ImproperlyConfigured, match=SETTING), transaction.atomic():
        ApplicationFactory(answers=ANSWERS)
    assert not Application.objects.exists()


def test_malformed_keys_are_refused_naming_the_variable_but_not_the_value(monkeypatch):
    monkeypatch.setenv(SETTING, f"{KEY_B}, not-a-key-at-all")
    with pytest.raises(ImproperlyConfigured, match=rf"{SETTING}: key 2 of 2") as caught:
        env_fernet_keys(SETTING)
    assert "not-a-key-at-all" not in str(caught.value)
    monkeypatch.setenv(SETTING, f" {KEY_B} ,{KEY_A},")
    assert env_fernet_keys(SETTING) == [KEY_B, KEY_A]


def test_a_deployment_without_keys_refuses_to_start(tmp_path):
    env = production_env(tmp_path)
    del env[SETTING]
    result = run_code("from django.conf import settings; settings.ENCRYPTION_KEYS", env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and f"{SETTING} is not set" in result.stderr


def test_a_deployment_with_a_malformed_key_refuses_to_start(tmp_path):
    result = run_code("from django.conf import settings; settings.DEBUG", production_env(tmp_path, **{SETTING: "abc"}))
    assert result.returncode != 0
    assert f"{SETTING}: key 1 of 1 is not a Fernet key" in result.stderr


def test_the_demo_uses_the_public_local_key_and_a_deployment_its_own(tmp_path):
    code = "from django.conf import settings as s; print(s.ENCRYPTION_KEYS == [s.LOCAL_ONLY_ENCRYPTION_KEY])"
    demo = run_code(code, clean_env(tmp_path, GOVTECH_DEMO="1"))
    assert demo.returncode == 0, demo.stderr
    assert demo.stdout.strip().splitlines()[-1] == "True"
    deployment = run_code(code, production_env(tmp_path))
    assert deployment.returncode == 0, deployment.stderr
    assert deployment.stdout.strip().splitlines()[-1] == "False"


def test_the_key_variable_is_documented_for_deployments():
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    assert re.search(rf"^{SETTING}=$", example, re.MULTILINE)
    assert "rotate_encryption_keys" in (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")


# --------------------------------------------------------------------------
# Migrations: add nullable -> fill -> switch, both ways
# --------------------------------------------------------------------------


@pytest.mark.django_db
def test_filling_copies_only_rows_not_filled_yet_in_batches():
    applications = [ApplicationFactory(answers={"n": n}, computed={"fee": n}) for n in range(5)]
    # The same mechanism the fill migrations use, here from one encrypted column to another.
    assert copy_columns(Application, {"answers": "computed"}, missing_only=False, batch_size=2) == 5
    assert [Application.objects.get(pk=a.pk).computed for a in applications] == [{"n": n} for n in range(5)]
    assert copy_columns(Application, {"answers": "computed"}, missing_only=True, batch_size=2) == 0


@pytest.mark.django_db(transaction=True)
def test_migrations_encrypt_existing_answers_and_payloads_and_reverse_them():
    before = [("procedures", "0011_retention_schedule"), ("messaging", "0003_outbox_unknown_status")]
    executor = MigrationExecutor(connection)
    leaves = executor.loader.graph.leaf_nodes()
    application = ApplicationFactory(answers={}, computed={})
    ids = {"procedure": application.procedure_id, "version": application.version_id, "status": application.status_id}
    application.delete()
    try:
        executor.migrate(before)
        old = executor.loader.project_state(before).apps
        OldApplication = old.get_model("procedures", "Application")
        OldSession = old.get_model("procedures", "ConversationSession")
        OldInbox = old.get_model("messaging", "InboxEvent")
        old_application = OldApplication.objects.create(
            procedure_id=ids["procedure"], version_id=ids["version"], status_id=ids["status"],
            receipt_number="OLD-2025-000001", line_user_id=LINE_USER, submission_key="s1",
            submitted_at="2025-04-01T09:00:00+09:00", answers=ANSWERS, computed={"fee": 1200},
        )
        old_session = OldSession.objects.create(line_user_id=LINE_USER, state={"answers": ANSWERS})
        old_inbox = OldInbox.objects.create(
            webhook_event_id="01OLD", event_type="message", line_timestamp="2025-04-01T09:00:00+09:00",
            payload={"message": {"text": "山田花子です"}},
        )

        executor = MigrationExecutor(connection)
        executor.migrate(leaves)

        assert_is_token(raw("procedures_application", "answers", old_application.pk), "山田")
        assert_is_token(raw("messaging_inboxevent", "payload", old_inbox.pk), "山田")
        loaded = Application.objects.get(pk=old_application.pk)
        assert (loaded.answers, loaded.computed) == (ANSWERS, {"fee": 1200})
        assert ConversationSession.objects.get(pk=old_session.pk).state == {"answers": ANSWERS}
        assert InboxEvent.objects.get(pk=old_inbox.pk).payload == {"message": {"text": "山田花子です"}}
        assert not Application._meta.get_field("answers").null

        executor = MigrationExecutor(connection)
        executor.migrate(before)
        old = executor.loader.project_state(before).apps
        assert old.get_model("procedures", "Application").objects.get(pk=old_application.pk).answers == ANSWERS
        assert old.get_model("procedures", "ConversationSession").objects.get(pk=old_session.pk).state == {
            "answers": ANSWERS
        }
        assert old.get_model("messaging", "InboxEvent").objects.get(pk=old_inbox.pk).payload == {
            "message": {"text": "山田花子です"}
        }
    finally:
        MigrationExecutor(connection).migrate(leaves)
