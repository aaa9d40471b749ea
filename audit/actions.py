"""Action codes written to the audit log and their Japanese labels.

Codes are plain strings (no choices on the model), so a later slice adds its codes here without a
migration. Keep them "<subject>.<verb>".
"""

from django.utils.translation import gettext_lazy as _

LOGIN = "auth.login"
LOGIN_FAILED = "auth.login_failed"
LOGOUT = "auth.logout"
APPLICATION_VIEW = "application.view"
APPLICATION_STATUS_CHANGE = "application.status_change"
APPLICATION_REVEAL = "application.reveal"
APPLICATION_IMAGE_VIEW = "application.image_view"
PROCEDURE_PUBLISH = "procedure.publish"
PROCEDURE_CLOSE = "procedure.close"
PROCEDURE_REOPEN = "procedure.reopen"
PROCEDURE_TEMPLATE_EXPORT = "procedure.export_templates"
ROLE_GRANT = "role.grant"
ROLE_CHANGE = "role.change"
ROLE_REVOKE = "role.revoke"
PROCEDURE_GRANT_ADD = "role.procedure_grant"
PROCEDURE_GRANT_REMOVE = "role.procedure_revoke"
AUDIT_EXPORT = "audit.export"
APPLICATION_EXPORT = "application.export"

LABELS = {
    LOGIN: _("ログイン"),
    LOGIN_FAILED: _("ログイン失敗"),
    LOGOUT: _("ログアウト"),
    APPLICATION_VIEW: _("申請の閲覧"),
    APPLICATION_STATUS_CHANGE: _("申請の状態変更"),
    APPLICATION_REVEAL: _("機微情報の表示"),
    APPLICATION_IMAGE_VIEW: _("添付画像の閲覧"),
    PROCEDURE_PUBLISH: _("手続きの公開"),
    PROCEDURE_CLOSE: _("受付の停止"),
    PROCEDURE_REOPEN: _("受付の再開"),
    PROCEDURE_TEMPLATE_EXPORT: _("手続きテンプレートの書き出し"),
    ROLE_GRANT: _("役割の付与"),
    ROLE_CHANGE: _("役割の変更"),
    ROLE_REVOKE: _("役割の取り消し"),
    PROCEDURE_GRANT_ADD: _("委託手続きの付与"),
    PROCEDURE_GRANT_REMOVE: _("委託手続きの取り消し"),
    AUDIT_EXPORT: _("監査ログの書き出し"),
    APPLICATION_EXPORT: _("申請の書き出し"),
}


def label(code: str) -> str:
    return str(LABELS.get(code, code))
