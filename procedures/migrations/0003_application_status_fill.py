"""Fill: every procedure gets the default statuses and transitions (unless it has statuses), and
every application without a status gets its procedure's initial status.

The defaults are copied here as they were when this migration was written, so later changes to
procedures.models.DEFAULT_STATUSES do not change what this migration does. Kept apart from the
schema changes (0002 adds the nullable column, 0004 makes it required) so that PostgreSQL never
alters a table with pending trigger events in the same transaction as the data.
"""

from django.db import migrations

STATUSES = (
    ("received", "受付", 10, True, False, True, ""),
    (
        "reviewing", "確認中", 20, False, False, True,
        "「{手続き名}」の申請（受付番号：{受付番号}）の内容を確認しています。\n現在の状態：{状態}",
    ),
    (
        "correction_requested", "修正依頼中", 30, False, False, False,
        "「{手続き名}」の申請（受付番号：{受付番号}）について、修正をお願いしたい点があります。"
        "市からのご案内をご確認ください。\n現在の状態：{状態}",
    ),
    (
        "completed", "完了", 40, False, True, False,
        "「{手続き名}」の申請（受付番号：{受付番号}）の手続きが完了しました。\n現在の状態：{状態}",
    ),
    (
        "rejected", "却下", 50, False, True, False,
        "「{手続き名}」の申請（受付番号：{受付番号}）は、お受けすることができませんでした。"
        "詳しくは担当課へお問い合わせください。\n現在の状態：{状態}",
    ),
    (
        "withdrawn", "取下げ", 60, False, True, False,
        "「{手続き名}」の申請（受付番号：{受付番号}）を取り下げました。\n現在の状態：{状態}",
    ),
)

TRANSITIONS = (
    ("received", "reviewing"),
    ("received", "correction_requested"),
    ("received", "completed"),
    ("received", "rejected"),
    ("received", "withdrawn"),
    ("reviewing", "correction_requested"),
    ("reviewing", "completed"),
    ("reviewing", "rejected"),
    ("reviewing", "withdrawn"),
    ("correction_requested", "reviewing"),
    ("correction_requested", "completed"),
    ("correction_requested", "rejected"),
    ("correction_requested", "withdrawn"),
)


def fill(apps, schema_editor):
    Procedure = apps.get_model("procedures", "Procedure")
    Application = apps.get_model("procedures", "Application")
    ApplicationStatus = apps.get_model("procedures", "ApplicationStatus")
    StatusTransition = apps.get_model("procedures", "StatusTransition")
    alias = schema_editor.connection.alias

    with_statuses = set(ApplicationStatus.objects.using(alias).values_list("procedure_id", flat=True))
    for procedure_id in Procedure.objects.using(alias).order_by("pk").values_list("pk", flat=True):
        if procedure_id in with_statuses:
            continue
        statuses = {}
        for code, label, order, is_initial, is_final, allows_withdrawal, template in STATUSES:
            statuses[code] = ApplicationStatus.objects.using(alias).create(
                procedure_id=procedure_id,
                code=code,
                label=label,
                order=order,
                is_initial=is_initial,
                is_final=is_final,
                allows_withdrawal=allows_withdrawal,
                notify_template=template,
            )
        StatusTransition.objects.using(alias).bulk_create(
            StatusTransition(procedure_id=procedure_id, from_status=statuses[source], to_status=statuses[target])
            for source, target in TRANSITIONS
        )

    # One UPDATE per procedure, whatever the number of its applications.
    for procedure_id in (
        Application.objects.using(alias).filter(status__isnull=True).order_by().values_list("procedure_id", flat=True).distinct()
    ):
        initial = (
            ApplicationStatus.objects.using(alias).filter(procedure_id=procedure_id).order_by("-is_initial", "order", "pk").first()
        )
        Application.objects.using(alias).filter(procedure_id=procedure_id, status__isnull=True).update(status=initial)


def unfill(apps, schema_editor):
    """Back to 0002: statuses stay defined, applications lose theirs (0002's reversal drops both)."""
    Application = apps.get_model("procedures", "Application")
    Application.objects.using(schema_editor.connection.alias).update(status=None)


class Migration(migrations.Migration):

    dependencies = [
        ("procedures", "0002_application_status_add"),
    ]

    operations = [
        migrations.RunPython(fill, unfill, elidable=False),
    ]
