"""What the staff API reads and writes. Answers come from api.selectors (masked per the policy)."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from api.selectors import procedure_steps
from procedures.models import STATUS_CODE_PATTERN, Application, Procedure

NOTE_MAX = 1000  # the admin's status note limit


class DepartmentSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class StepSerializer(serializers.Serializer):
    key = serializers.CharField()
    label = serializers.CharField()
    kind = serializers.CharField()
    sensitive = serializers.BooleanField()


class ProcedureSerializer(serializers.ModelSerializer):
    department = DepartmentSerializer(allow_null=True, read_only=True)
    published_version = serializers.SerializerMethodField()
    steps = serializers.SerializerMethodField()

    class Meta:
        model = Procedure
        fields = ["id", "name", "department", "is_open", "published_version", "steps"]

    @extend_schema_field({"type": "integer", "nullable": True, "description": "公開中の版の番号（未公開なら null）"})
    def get_published_version(self, procedure) -> int | None:
        return procedure.current_version.number if procedure.current_version_id else None

    @extend_schema_field(StepSerializer(many=True))
    def get_steps(self, procedure):
        return procedure_steps(procedure)


class StatusSerializer(serializers.Serializer):
    code = serializers.CharField()
    label = serializers.CharField()


class ApplicationSerializer(serializers.ModelSerializer):
    procedure = serializers.IntegerField(source="procedure_id", read_only=True)
    procedure_name = serializers.CharField(source="procedure.name", read_only=True)
    version = serializers.IntegerField(source="version.number", read_only=True)
    status = StatusSerializer(read_only=True)
    assignee = serializers.IntegerField(source="assignee_id", allow_null=True, read_only=True)

    class Meta:
        model = Application
        fields = [
            "id",
            "receipt_number",
            "procedure",
            "procedure_name",
            "version",
            "status",
            "assignee",
            "needs_action",
            "submitted_at",
        ]


class ApplicationDetailSerializer(ApplicationSerializer):
    answers = serializers.SerializerMethodField()

    class Meta(ApplicationSerializer.Meta):
        fields = [*ApplicationSerializer.Meta.fields, "answers"]

    @extend_schema_field(
        {
            "type": "object",
            "additionalProperties": {},
            "description": "回答（ステップのキーごと）。機微情報は閲覧権限がなければ ●●●● で伏せます。",
        }
    )
    def get_answers(self, application):
        return self.context["answers"].values


_DATE_ERROR = _("日付は YYYY-MM-DD の形で指定してください。例: 2026-04-01")


class ApplicationFilterSerializer(serializers.Serializer):
    """The list's query parameters; a bad value is a 400 naming the parameter."""

    procedure = serializers.IntegerField(
        required=False, min_value=1, error_messages={"invalid": _("procedure には手続きの id（整数）を指定してください。"),
                                                     "min_value": _("procedure には手続きの id（整数）を指定してください。"),
                                                     "max_string_length": _("procedure の値が長すぎます。")}
    )
    status = serializers.RegexField(
        STATUS_CODE_PATTERN,
        required=False,
        error_messages={"invalid": _("status には状態のコード（例: received）を指定してください。")},
    )
    submitted_from = serializers.DateField(
        required=False, input_formats=["iso-8601"], error_messages={"invalid": _DATE_ERROR}
    )
    submitted_to = serializers.DateField(
        required=False, input_formats=["iso-8601"], error_messages={"invalid": _DATE_ERROR}
    )
    needs_action = serializers.BooleanField(
        required=False, error_messages={"invalid": _("needs_action には true か false を指定してください。")}
    )
    assignee = serializers.IntegerField(
        required=False, min_value=1, error_messages={"invalid": _("assignee には職員の id（整数）を指定してください。"),
                                                     "min_value": _("assignee には職員の id（整数）を指定してください。"),
                                                     "max_string_length": _("assignee の値が長すぎます。")}
    )

    def validate(self, attrs):
        start, end = attrs.get("submitted_from"), attrs.get("submitted_to")
        if start and end and start > end:
            raise serializers.ValidationError(
                {"submitted_to": [_("submitted_to は submitted_from と同じ日かそれより後にしてください。")]}
            )
        return attrs


class StatusChangeSerializer(serializers.Serializer):
    to_status = serializers.RegexField(
        STATUS_CODE_PATTERN,
        help_text=_("変更後の状態のコード（例: reviewing）"),
        error_messages={
            "invalid": _("to_status には状態のコード（例: reviewing）を指定してください。"),
            "required": _("to_status（変更後の状態のコード）を指定してください。"),
            "blank": _("to_status（変更後の状態のコード）を指定してください。"),
            "null": _("to_status（変更後の状態のコード）を指定してください。"),
        },
    )
    note = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=NOTE_MAX,
        help_text=_("メモ（職員向け、任意）"),
        error_messages={"max_length": _("メモは{max_length}文字以内にしてください。")},
    )


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()


# The 400 of a bad parameter or body: {"parameter name": ["Japanese message", …]}.
VALIDATION_ERROR = OpenApiTypes.OBJECT
