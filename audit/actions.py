"""Action codes written to the audit log and their Japanese labels.

Codes are plain strings (no choices on the model), so a later slice adds its codes here without a
migration. Keep them "<subject>.<verb>".
"""

from django.utils.translation import gettext_lazy as _

LOGIN = "auth.login"
LOGIN_FAILED = "auth.login_failed"
LOGOUT = "auth.logout"
LOCKOUT = "auth.lockout"
LOGIN_UNLOCK = "auth.unlock"
OTP_ENROL = "auth.otp_enrol"
OTP_RESET = "auth.otp_reset"
APPLICATION_VIEW = "application.view"
APPLICATION_STATUS_CHANGE = "application.status_change"
APPLICATION_REVEAL = "application.reveal"
APPLICATION_IMAGE_VIEW = "application.image_view"
APPLICATION_MESSAGE = "application.message"
APPLICATION_CORRECTION_REQUEST = "application.correction_request"
APPLICATION_CORRECTION_CANCEL = "application.correction_cancel"
APPLICATION_RESUBMIT = "application.resubmit"
APPLICATION_ASSIGN = "application.assign"
APPLICATION_NEEDS_ACTION = "application.needs_action"
APPLICATION_STAFF_FIELDS = "application.staff_fields"
APPLICATION_PRINT = "application.print"
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
APPLICATION_PROXY_ENTRY = "application.proxy_entry"
APPLICATION_RETENTION_DELETE = "application.retention_delete"
API_TOKEN_CREATE = "api.token_create"  # noqa: S105 (an audit action code, not a secret)
API_TOKEN_REVOKE = "api.token_revoke"  # noqa: S105 (an audit action code, not a secret)
WEBHOOK_ENDPOINT_CHANGE = "webhook.endpoint_change"
WEBHOOK_RESEND = "webhook.resend"
RESIDENT_MESSAGE = "resident.message"
BROADCAST_SUBMIT = "broadcast.submit"
BROADCAST_APPROVE = "broadcast.approve"
BROADCAST_CANCEL = "broadcast.cancel"
BROADCAST_RETURN = "broadcast.return_to_draft"
RICH_MENU_DEPLOY = "rich_menu.deploy"
RICH_MENU_DISASTER_MODE = "rich_menu.disaster_mode"
CAMPAIGN_IMPORT = "campaign.import"
CAMPAIGN_SEND = "campaign.send"
CAMPAIGN_EXPORT = "campaign.export"
SEGMENT_CREATE = "segment.create"
SEGMENT_CHANGE = "segment.change"
SEGMENT_DELETE = "segment.delete"

LABELS = {
    LOGIN: _("ログイン"),
    LOGIN_FAILED: _("ログイン失敗"),
    LOGOUT: _("ログアウト"),
    LOCKOUT: _("ログインの一時停止（失敗が続いたため）"),
    LOGIN_UNLOCK: _("ログイン停止の解除"),
    OTP_ENROL: _("二段階認証の登録"),
    OTP_RESET: _("二段階認証のリセット"),
    APPLICATION_VIEW: _("申請の閲覧"),
    APPLICATION_STATUS_CHANGE: _("申請の状態変更"),
    APPLICATION_REVEAL: _("機微情報の表示"),
    APPLICATION_IMAGE_VIEW: _("添付画像の閲覧"),
    APPLICATION_MESSAGE: _("住民とのメッセージ"),
    APPLICATION_CORRECTION_REQUEST: _("修正依頼"),
    APPLICATION_CORRECTION_CANCEL: _("修正依頼の取消し"),
    APPLICATION_RESUBMIT: _("修正された申請の再提出"),
    APPLICATION_ASSIGN: _("申請の担当変更"),
    APPLICATION_NEEDS_ACTION: _("申請の要対応の変更"),
    APPLICATION_STAFF_FIELDS: _("申請の管理項目の更新"),
    APPLICATION_PRINT: _("申請の印刷"),
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
    APPLICATION_PROXY_ENTRY: _("申請の代理入力"),
    APPLICATION_RETENTION_DELETE: _("保存期間を過ぎた申請の削除"),
    API_TOKEN_CREATE: _("API トークンの発行"),
    API_TOKEN_REVOKE: _("API トークンの削除"),
    WEBHOOK_ENDPOINT_CHANGE: _("連携先（Webhook）の設定変更"),
    WEBHOOK_RESEND: _("連携（Webhook）の再送"),
    RESIDENT_MESSAGE: _("住民への個別メッセージ"),
    BROADCAST_SUBMIT: _("一斉配信の申請・予約"),
    BROADCAST_APPROVE: _("一斉配信の承認"),
    BROADCAST_CANCEL: _("一斉配信の取り消し"),
    BROADCAST_RETURN: _("一斉配信の差し戻し（下書きに戻す）"),
    RICH_MENU_DEPLOY: _("リッチメニューの反映"),
    RICH_MENU_DISASTER_MODE: _("災害時メニューへの切り替え・戻し"),
    CAMPAIGN_IMPORT: _("キャンペーン対象者の取り込み"),
    CAMPAIGN_SEND: _("キャンペーンの送信"),
    CAMPAIGN_EXPORT: _("キャンペーン結果の書き出し"),
    SEGMENT_CREATE: _("セグメントの作成"),
    SEGMENT_CHANGE: _("セグメントの変更"),
    SEGMENT_DELETE: _("セグメントの削除"),
}


def label(code: str) -> str:
    return str(LABELS.get(code, code))
