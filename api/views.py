"""The staff REST API (/api/v1/). Thin views: scoped querysets from api.selectors, checks from staff/policy.py.

Objects outside the caller's view scope answer 404 like ids that do not exist; an application the
caller may view but not process answers 403 on a status change.
"""

from __future__ import annotations

from django.contrib.admin.views.decorators import staff_member_required
from django.db.models import Q
from django.shortcuts import render
from django.utils.translation import gettext as _
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.response import Response

from api import serializers as s
from api.selectors import api_applications, api_procedures, application_answers
from audit import actions as audit_actions
from audit.services import audit_record
from procedures.models import ApplicationStatus
from procedures.services import application_status_change_by_staff
from procedures.workflow import WorkflowError
from staff import policy

_ERRORS = {
    401: OpenApiResponse(s.ErrorSerializer, description="認証されていません（トークンがない・無効・停止中の職員）"),
    403: OpenApiResponse(s.ErrorSerializer, description="この操作の権限がありません"),
}
_NOT_FOUND = {404: OpenApiResponse(s.ErrorSerializer, description="見つかりません（他部署の id も同じ）")}
_BAD_REQUEST = {400: OpenApiResponse(s.VALIDATION_ERROR, description="パラメーターの誤り（項目名ごとの日本語メッセージ）")}

_FILTERS = [
    OpenApiParameter("procedure", OpenApiTypes.INT, description="手続きの id"),
    OpenApiParameter("status", OpenApiTypes.STR, description="状態のコード（例: received）", pattern=r"^[a-z][a-z0-9_]{0,39}$"),
    OpenApiParameter("submitted_from", OpenApiTypes.DATE, description="申請日（この日以降、日本時間）"),
    OpenApiParameter("submitted_to", OpenApiTypes.DATE, description="申請日（この日まで、日本時間）"),
    OpenApiParameter("needs_action", OpenApiTypes.BOOL, description="要対応のものだけ（true）／それ以外（false）"),
    OpenApiParameter("assignee", OpenApiTypes.INT, description="担当職員の id"),
]


@extend_schema_view(
    list=extend_schema(summary="手続きの一覧", responses={200: s.ProcedureSerializer(many=True), **_BAD_REQUEST,
                                                          **_ERRORS, **_NOT_FOUND}),
    retrieve=extend_schema(summary="手続きの詳細", responses={200: s.ProcedureSerializer, **_ERRORS, **_NOT_FOUND}),
)
class ProcedureViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = s.ProcedureSerializer

    def get_queryset(self):
        return api_procedures(self.request.user)


@extend_schema_view(
    list=extend_schema(
        summary="申請の一覧",
        parameters=_FILTERS,
        responses={200: s.ApplicationSerializer(many=True), **_BAD_REQUEST, **_ERRORS, **_NOT_FOUND},
    ),
    retrieve=extend_schema(
        summary="申請の詳細（回答つき、閲覧は監査ログに記録）",
        responses={200: s.ApplicationDetailSerializer, **_ERRORS, **_NOT_FOUND},
    ),
)
class ApplicationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = s.ApplicationSerializer

    def get_queryset(self):
        return api_applications(self.request.user)

    def filter_queryset(self, queryset):
        if self.action != "list":
            return queryset
        given = s.ApplicationFilterSerializer(data=self.request.query_params.dict())
        given.is_valid(raise_exception=True)
        wanted = given.validated_data
        conditions = Q()
        if "procedure" in wanted:
            conditions &= Q(procedure_id=wanted["procedure"])
        if "status" in wanted:
            conditions &= Q(status__code=wanted["status"])
        if "submitted_from" in wanted:
            conditions &= Q(submitted_at__date__gte=wanted["submitted_from"])
        if "submitted_to" in wanted:
            conditions &= Q(submitted_at__date__lte=wanted["submitted_to"])
        if "needs_action" in wanted:
            conditions &= Q(needs_action=wanted["needs_action"])
        if "assignee" in wanted:
            conditions &= Q(assignee_id=wanted["assignee"])
        return queryset.filter(conditions)

    def retrieve(self, request, *args, **kwargs):
        application = self.get_object()
        may_reveal = policy.can(request.user, policy.REVEAL_SENSITIVE, application)
        answers = application_answers(application, sensitive="include" if may_reveal else "mask")
        details = {"receipt_number": application.receipt_number, "via": "api"}
        audit_record(actor=request.user, action=audit_actions.APPLICATION_VIEW, obj=application,
                     details=details, request=request)
        if answers.revealed:
            audit_record(actor=request.user, action=audit_actions.APPLICATION_REVEAL, obj=application,
                         details={**details, "keys": list(answers.revealed)}, request=request)
        serializer = s.ApplicationDetailSerializer(application, context={**self.get_serializer_context(),
                                                                         "answers": answers})
        return Response(serializer.data)

    @extend_schema(
        summary="申請の状態を変更する",
        request=s.StatusChangeSerializer,
        responses={200: s.ApplicationSerializer, **_BAD_REQUEST, **_ERRORS, **_NOT_FOUND},
    )
    @action(detail=True, methods=["post"], url_path="status")
    def change_status(self, request, pk=None):
        application = self.get_object()
        if not policy.can(request.user, policy.PROCESS, application):
            raise PermissionDenied(_("この申請の状態を変更する権限がありません。"))
        given = s.StatusChangeSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        code = given.validated_data["to_status"]
        target = ApplicationStatus.objects.filter(procedure_id=application.procedure_id, code=code).first()
        if target is None:
            raise ValidationError({"to_status": [_("この手続きには状態「%(code)s」がありません。") % {"code": code}]})
        try:
            application_status_change_by_staff(
                application=application, to_status=target, actor=request.user, note=given.validated_data["note"],
                request=request,
            )
        except WorkflowError as error:
            raise ValidationError({"to_status": [error.message]}) from error
        return Response(s.ApplicationSerializer(self.get_queryset().get(pk=application.pk)).data,
                        status=status.HTTP_200_OK)


@staff_member_required
def docs(request):
    """A short Japanese page listing the operations, generated from the schema (no outside scripts)."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    operations = [
        {"method": method.upper(), "path": path, "summary": operation.get("summary", "")}
        for path, item in schema["paths"].items()
        for method, operation in item.items()
    ]
    return render(request, "api/docs.html", {"operations": operations, "title": schema["info"]["title"]})
