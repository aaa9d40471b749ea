"""Outbox: the "unknown" status (a reply whose outcome LINE never told us). Inbox: events parked
before this migration are redacted like processed ones (they kept the resident's input)."""

from django.db import migrations, models

# A frozen copy of messaging.line.parse.redact (as of this migration).
_KEPT_EVENT_FIELDS = ("type", "mode", "timestamp", "source", "webhookEventId", "deliveryContext", "follow")


def _redact(event):
    if not isinstance(event, dict):
        return {"redacted": True}
    kept = {key: event[key] for key in _KEPT_EVENT_FIELDS if key in event}
    message = event.get("message")
    if isinstance(message, dict):
        kept["message"] = {key: message[key] for key in ("id", "type") if key in message}
    if "postback" in event:
        kept["postback"] = {}
    kept["redacted"] = True
    return kept


def redact_parked_events(apps, schema_editor):
    InboxEvent = apps.get_model("messaging", "InboxEvent")
    for event in InboxEvent.objects.filter(status="failed").only("pk", "payload", "last_error").iterator():
        if isinstance(event.payload, dict) and event.payload.get("redacted") is True:
            continue
        event.payload = _redact(event.payload)
        # The exception's text could quote the input: keep only its class.
        error_class = event.last_error.split(":", 1)[0].strip()[:100] or "Error"
        event.last_error = f"{error_class}: 処理中にエラーが発生しました（保留）"
        event.save(update_fields=["payload", "last_error"])


class Migration(migrations.Migration):

    dependencies = [
        ('messaging', '0002_sweep_schedule'),
    ]

    operations = [
        migrations.AlterField(
            model_name='inboxevent',
            name='payload',
            field=models.JSONField(help_text='処理が終わる（または保留になる）と、住民が送った内容は消去されます。', verbose_name='イベント'),
        ),
        migrations.AlterField(
            model_name='outboxmessage',
            name='status',
            field=models.CharField(choices=[('pending', '送信待ち'), ('sending', '送信中'), ('sent', '送信済み'), ('failed', '失敗'), ('unknown', '送信結果不明')], default='pending', max_length=10, verbose_name='状態'),
        ),
        migrations.RunPython(redact_parked_events, migrations.RunPython.noop),
    ]
