"""Japanese texts for engine messages, actions, summary values and spec problems.

The engine and spec.py speak in codes and parameters; this module turns them
into what residents and staff read. Message ids are the Japanese strings
themselves (gettext returns them unchanged until a translation exists).
Rendering never raises on missing parameters: they render as empty text.
"""

from __future__ import annotations

from datetime import date

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from procedures.engine.handlers import get_handler
from procedures.engine.types import Action, Message, SummaryRow
from procedures.spec import Problem, Step

WEEKDAY_NAMES = "月火水木金土日"


class _Params(dict):
    def __missing__(self, key):
        return ""


def _fill(text: str, params: dict | None = None) -> str:
    return text % _Params(params or {})


def _join(*parts: str) -> str:
    return "\n".join(part for part in parts if part)


# --------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------


def format_number(value) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value) if value is not None else ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def format_bytes(size) -> str:
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        return _("指定の大きさ")
    if size >= 1024 * 1024:
        return _fill(_("%(size)sMB"), {"size": format_number(round(size / (1024 * 1024), 1))})
    if size >= 1024:
        return _fill(_("%(size)sKB"), {"size": format_number(round(size / 1024, 1))})
    return _fill(_("%(size)sバイト"), {"size": size})


def format_date(value) -> str:
    """"2026-12-01" -> "2026年12月1日（火）"."""
    try:
        day = value if isinstance(value, date) else date.fromisoformat(str(value))
    except ValueError:
        return str(value)
    return _fill(
        _("%(year)s年%(month)s月%(day)s日（%(weekday)s）"),
        {"year": day.year, "month": day.month, "day": day.day, "weekday": WEEKDAY_NAMES[day.weekday()]},
    )


def format_value(kind: str, value) -> str:
    """A display value built by the engine (handler.display) as Japanese text."""
    if value is None:
        return _("（未回答）")
    if kind == "number" and isinstance(value, dict):
        return format_number(value.get("number")) + str(value.get("unit") or "")
    if kind == "date":
        return format_date(value)
    if kind == "multiple_choice" and isinstance(value, list):
        return "、".join(str(item) for item in value) if value else _("（選択なし）")
    if kind == "yes_no" and isinstance(value, bool):
        return _("はい") if value else _("いいえ")
    if kind == "image" and isinstance(value, dict):
        return _fill(_("画像%(count)s枚"), {"count": value.get("images", 1)})
    if kind == "location" and isinstance(value, dict):
        place = value.get("address") or value.get("title")
        if place:
            return str(place)
        return _fill(
            _("緯度%(latitude)s、経度%(longitude)s"),
            {"latitude": value.get("latitude"), "longitude": value.get("longitude")},
        )
    return str(value)


def answer_text(step: Step, value) -> str:
    """A stored answer as people read it (staff pages, exports): the engine's own display, in words."""
    return format_value(step.kind, get_handler(step.kind).display(step, value))


def render_summary_value(row: SummaryRow) -> str:
    if row.masked:
        return _("●●●●（入力済み）")
    return format_value(row.kind, row.value)


def _number_range(minimum, maximum, unit: str) -> str:
    params = {"min": format_number(minimum), "max": format_number(maximum), "unit": unit or ""}
    if minimum is not None and maximum is not None:
        return _fill(_("%(min)s%(unit)s〜%(max)s%(unit)s"), params)
    if minimum is not None:
        return _fill(_("%(min)s%(unit)s以上"), params)
    if maximum is not None:
        return _fill(_("%(max)s%(unit)s以下"), params)
    return ""


def _weekday_list(weekdays) -> str:
    try:
        return "・".join(WEEKDAY_NAMES[day] for day in sorted(weekdays))
    except (TypeError, IndexError):
        return ""


# --------------------------------------------------------------------------
# Engine messages
# --------------------------------------------------------------------------

_WRONG_TYPE = {
    "text": gettext_lazy("文字で入力してください。"),
    "number": gettext_lazy("数字で入力してください。"),
    "date": gettext_lazy("日付をボタンから選ぶか、「12月1日」のように入力してください。"),
    "choice": gettext_lazy("下のボタンから選んでください。"),
    "yes_no": gettext_lazy("「はい」か「いいえ」でお答えください。"),
    "image": gettext_lazy("写真（画像）を送ってください。"),
    "location": gettext_lazy("位置情報を送ってください。"),
}

_BAD_FORMAT = {
    "phone": gettext_lazy("電話番号の形式が正しくありません。市外局番から入力してください（例：090-1234-5678）。"),
    "postal_code": gettext_lazy("郵便番号は7桁の数字で入力してください（例：123-4567）。"),
    "email": gettext_lazy("メールアドレスの形式が正しくありません（例：taro@example.jp）。"),
    "katakana": gettext_lazy("全角カタカナで入力してください。"),
}

_DATE_REASONS = {
    "too_early": gettext_lazy("%(min)s以降の日付を選んでください。"),
    "too_late": gettext_lazy("%(max)s以前の日付を選んでください。"),
    "excluded": gettext_lazy("その日は受け付けていません。別の日を選んでください。"),
    "weekday": gettext_lazy("選べる曜日は%(weekdays)sです。別の日を選んでください。"),
    "holiday": gettext_lazy("祝日は選べません。別の日を選んでください。"),
}

_FORMAT_HINTS = {
    "phone": gettext_lazy("電話番号を入力してください（ハイフンはなくても構いません）。"),
    "postal_code": gettext_lazy("郵便番号を7桁で入力してください（例：123-4567）。"),
    "email": gettext_lazy("メールアドレスを入力してください。"),
    "katakana": gettext_lazy("全角カタカナで入力してください。"),
}


def _date_params(params: dict) -> dict:
    return {
        "min": format_date(params["min"]) if params.get("min") else "",
        "max": format_date(params["max"]) if params.get("max") else "",
        "weekdays": _weekday_list(params.get("weekdays") or []),
    }


def _question_hint(params: dict) -> str:
    kind = params.get("kind")
    if kind == "short_text":
        text_format = params.get("format") or "none"
        if text_format == "regex":
            return params.get("hint") or _("決められた形式で入力してください。")
        if text_format in _FORMAT_HINTS:
            return str(_FORMAT_HINTS[text_format])
        return _fill(_("%(max)s文字以内で入力してください。"), {"max": params.get("max_length")})
    if kind == "long_text":
        return _fill(_("%(max)s文字以内で入力してください。"), {"max": params.get("max_length")})
    if kind == "number":
        limits = _number_range(params.get("min"), params.get("max"), params.get("unit") or "")
        if limits:
            return _fill(_("数字で入力してください（%(range)s）。"), {"range": limits})
        return _("数字で入力してください。")
    if kind == "date":
        hint = _("下のボタンから日付を選ぶか、「12月1日」のように入力してください。")
        dates = _date_params(params)
        if dates["min"] and dates["max"]:
            hint += _fill(_("（%(min)s〜%(max)s）"), dates)
        elif dates["min"]:
            hint += _fill(_("（%(min)s以降）"), dates)
        elif dates["max"]:
            hint += _fill(_("（%(max)s以前）"), dates)
        weekdays = params.get("weekdays")
        if isinstance(weekdays, list) and weekdays and len(weekdays) < 7:
            hint = _join(hint, _fill(_("選べる曜日：%(weekdays)s"), dates))
        if params.get("allow_holidays") is False:
            hint = _join(hint, _("祝日は選べません。"))
        return hint
    if kind == "single_choice":
        hint = _("下のボタンから選んでください。")
        if (params.get("pages") or 1) > 1:
            hint += _fill(_("（%(page)s／%(pages)sページ目。「次へ」で続きを表示します）"), params)
        return hint
    if kind == "multiple_choice":
        hint = _("当てはまるものをすべて選び、最後に「選択完了」を押してください。")
        if (params.get("pages") or 1) > 1:
            hint += _fill(_("（%(page)s／%(pages)sページ目）"), params)
        if "selected" in params:
            selected = params.get("selected") or []
            if selected:
                hint = _join(hint, _fill(_("選択中：%(items)s"), {"items": "、".join(selected)}))
            else:
                hint = _join(hint, _("まだ何も選んでいません。"))
        else:
            hint = _join(hint, _fill(_("選択中：%(count)s件"), {"count": params.get("selected_count", 0)}))
        return hint
    if kind == "yes_no":
        return _("「はい」か「いいえ」でお答えください。")
    if kind == "image":
        return _("写真を撮るか、アルバムから選んで送ってください。")
    if kind == "location":
        return _("「位置情報を送る」ボタンから場所を送ってください。")
    return ""


def _render_question(params: dict) -> str:
    lines = [params.get("label") or "", params.get("help") or "", _question_hint(params)]
    if params.get("required") is False:
        lines.append(_("（任意：「スキップ」で飛ばせます）"))
    if "current" in params:
        lines.append(_fill(_("現在の回答：%(value)s"), {"value": format_value(params.get("kind"), params["current"])}))
    elif params.get("has_current"):
        lines.append(_("回答済みです（内容は表示しません）。"))
    return _join(*lines) or _("次の質問にお答えください。")


def _computed_lines(params: dict) -> list[str]:
    return [
        _fill(
            _("%(label)s：%(value)s%(unit)s"),
            {"label": item.get("label"), "value": format_number(item.get("value")), "unit": item.get("unit") or ""},
        )
        for item in params.get("computed") or []
        if isinstance(item, dict)
    ]


def _render_summary(message: Message) -> str:
    params = message.params
    lines = [params.get("label") or _("以下の内容でよろしいですか？")]
    for row in message.rows:
        lines.append(_fill(_("■%(label)s\n%(value)s"), {"label": row.label, "value": render_summary_value(row)}))
    lines += _computed_lines(params)
    lines.append(params.get("help") or "")
    return _join(*lines)


def _render_completed(params: dict) -> str:
    receipt = ""
    if params.get("receipt_number"):
        receipt = _fill(_("受付番号：%(receipt_number)s"), params)
    return _join(
        params.get("label") or _fill(_("「%(name)s」の申し込みを受け付けました。"), params),
        receipt,
        *_computed_lines(params),
        params.get("help") or "",
    )


def _render_started(params: dict) -> str:
    return _join(
        _fill(_("「%(name)s」の手続きを始めます。"), params),
        params.get("description") or "",
        _("途中でやめるときは「やめる」、前の質問に戻るときは「戻る」と送ってください。"),
    )


def _named(params: dict) -> dict:
    return {**params, "name": params.get("name") or _("手続き")}


_SIMPLE = {
    "menu": gettext_lazy("ご利用になる手続きを選んでください。"),
    "menu.empty": gettext_lazy("現在受け付けている手続きはありません。"),
    "procedure.not_open": gettext_lazy("その手続きは現在受け付けていません。"),
    "procedure.closed": gettext_lazy(
        "「%(name)s」の受付が終了したため、手続きを終了しました。お手数ですが、メニューから改めてお選びください。"
    ),
    "procedure.ended": gettext_lazy("「%(name)s」の手続きを終了しました。"),
    "procedure.already_submitted": gettext_lazy("この申し込みはすでに受け付けています。重ねて申し込まれることはありません。"),
    "confirmation.use_buttons": gettext_lazy("内容を確認し、「この内容で申し込む」か「修正する」のボタンを押してください。"),
    "session.expired": gettext_lazy(
        "しばらく操作がなかったため、「%(name)s」の手続きを中断しました。お手数ですが、最初からやり直してください。"
    ),
    "session.reset": gettext_lazy("申し訳ありません。手続きの途中経過を読み込めませんでした。お手数ですが、最初からやり直してください。"),
    "session.confirm_cancel": gettext_lazy("「%(name)s」の手続きをやめますか？入力した内容は破棄されます。"),
    "session.cancelled": gettext_lazy("「%(name)s」の手続きをやめました。"),
    "session.confirm_switch": gettext_lazy("「%(current)s」の手続きの途中です。やめて「%(next)s」を始めますか？"),
    "session.already_in_progress": gettext_lazy("「%(name)s」の手続きはすでに始まっています。続きからお答えください。"),
    "button.stale": gettext_lazy("このボタンは現在使えません。"),
    "nav.cannot_go_back": gettext_lazy("これより前の質問はありません。"),
    "nav.cannot_skip": gettext_lazy("この質問にはお答えいただく必要があります。"),
    "nav.nothing_to_keep": gettext_lazy("この質問にはまだ回答がありません。"),
    "error.internal": gettext_lazy("申し訳ありません。エラーが発生しました。お手数ですが、最初からやり直してください。"),
    "error.empty": gettext_lazy("何も入力されていません。"),
    "error.too_long": gettext_lazy("%(max)s文字以内で入力してください。"),
    "error.not_a_number": gettext_lazy("数字で入力してください。"),
    "error.not_an_integer": gettext_lazy("小数点のない数字で入力してください。"),
    "error.not_a_date": gettext_lazy("日付として読み取れませんでした。「12月1日」や「2026/12/1」のように入力してください。"),
    "error.unknown_choice": gettext_lazy("選択肢の中から選んでください。"),
    "error.too_few_selected": gettext_lazy("%(min)s個以上選んでください。"),
    "error.too_many_selected": gettext_lazy("選べるのは%(max)s個までです。"),
    "error.image_type": gettext_lazy("JPEGまたはPNG形式の画像を送ってください。"),
    "error.bad_image": gettext_lazy("画像を受け取れませんでした。もう一度送ってください。"),
    "error.bad_location": gettext_lazy("位置情報を読み取れませんでした。もう一度送ってください。"),
}


# -- the status workflow (procedures/workflow.py): 申請状況, withdrawal, notices ---------------


def _render_status_list(params: dict) -> str:
    applications = [item for item in params.get("applications") or [] if isinstance(item, dict)]
    if not applications:
        return str(_SIMPLE["status.empty"])
    lines = [_("お申し込みの状況です（新しい順）。")]
    can_withdraw = False
    for number, item in enumerate(applications, start=1):
        entry = [
            _fill(_("%(number)s. %(procedure)s"), {"number": number, "procedure": item.get("procedure") or _("手続き")}),
            _fill(_("受付番号：%(receipt_number)s"), item),
            _fill(_("状態：%(status)s"), item),
        ]
        if item.get("submitted_at"):
            entry.append(_fill(_("申請日：%(date)s"), {"date": format_date(item["submitted_at"])}))
        if item.get("can_withdraw"):
            entry.append(_("（取り下げできます）"))
            can_withdraw = True
        lines.append("\n".join(entry))
    if params.get("more"):
        lines.append(_fill(_("ほかに%(more)s件のお申し込みがあります。"), params))
    if can_withdraw:
        lines.append(_("取り下げる場合は、下のボタンから番号を選んでください。"))
    return "\n\n".join(lines)


def _render_status_notice(params: dict) -> str:
    return str(params.get("text") or "").strip() or _("お申し込みの状態が変わりました。")


_STATUS_RENDERERS = {
    "status.list": _render_status_list,
    "status.notice": _render_status_notice,
}

_SIMPLE_STATUS = {
    "status.empty": gettext_lazy("お申し込みの記録はありません。"),
    "status.not_found": gettext_lazy("該当するお申し込みが見つかりません。「申請状況」と送ると、お申し込みの一覧を表示します。"),
    "status.confirm_withdraw": gettext_lazy(
        "「%(procedure)s」の申請（受付番号：%(receipt_number)s）を取り下げますか？取り下げると元に戻せません。"
    ),
    "status.withdrawn": gettext_lazy("「%(procedure)s」の申請（受付番号：%(receipt_number)s）を取り下げました。"),
    "status.withdraw_kept": gettext_lazy("取り下げをやめました。お申し込みはそのままです。"),
    "status.already_withdrawn": gettext_lazy("受付番号 %(receipt_number)s の申請は、すでに取り下げられています。"),
    "status.withdraw_not_allowed": gettext_lazy(
        "受付番号 %(receipt_number)s の申請は、現在の状態（%(status)s）では LINE から取り下げできません。"
        "取り下げを希望される場合は、担当課へお問い合わせください。"
    ),
    "status.session_continues": gettext_lazy("「%(name)s」の手続きの途中です。続けるには、前の質問にお答えください。"),
}
_SIMPLE.update(_SIMPLE_STATUS)


# -- messages with the resident and correction requests (procedures/correspondence.py) -----------


def _render_correction_started(params: dict) -> str:
    labels = "、".join(str(label) for label in params.get("labels") or [])
    return _join(
        _fill(_("「%(name)s」の申請（受付番号：%(receipt_number)s）の修正を始めます。"), params),
        _fill(_("修正する項目：%(labels)s"), {"labels": labels}) if labels else "",
        _("最後に確認画面が出ますので、「この内容で再提出する」を押してください。"),
    )


def _render_staff_message(params: dict) -> str:
    return _join(
        _fill(_("「%(procedure)s」の申請（受付番号：%(receipt_number)s）について、担当者からのメッセージです。"), params),
        str(params.get("text") or "").strip(),
        _("このメッセージに返信すると、担当者に届きます。"),
    )


def _render_correction_notice(params: dict) -> str:
    return _join(
        _fill(_("「%(procedure)s」の申請（受付番号：%(receipt_number)s）について、修正をお願いします。"), params),
        _fill(_("修正をお願いする理由：%(reason)s"), params) if params.get("reason") else "",
    )


_CORRESPONDENCE_RENDERERS = {
    "correction.started": _render_correction_started,
    "correspondence.staff_message": _render_staff_message,
    "correspondence.correction_notice": _render_correction_notice,
}

_SIMPLE_CORRESPONDENCE = {
    "correction.completed": gettext_lazy(
        "「%(name)s」の申請（受付番号：%(receipt_number)s）の修正内容を受け付けました。担当者が確認します。"
    ),
    "correction.unavailable": gettext_lazy(
        "申し訳ありません。この申請は現在 LINE から修正できません。担当課へお問い合わせください。"
    ),
    "correction.in_progress": gettext_lazy("修正の入力中です。続けるには、前の質問にお答えください。"),
    "correction.finish_current_first": gettext_lazy(
        "「%(name)s」の入力中です。終わるか「やめる」と送ってから、もう一度「修正する」を押してください。"
    ),
    "correspondence.correction_button": gettext_lazy("修正するには、下のボタンを押してください。"),
    "correspondence.correction_answered": gettext_lazy(
        "受付番号 %(receipt_number)s の修正は、すでに受け付けています。重ねて修正する必要はありません。"
    ),
    "correspondence.correction_cancelled": gettext_lazy(
        "受付番号 %(receipt_number)s の修正のお願いは取り消されました。修正の必要はありません。"
    ),
    "correspondence.correction_not_found": gettext_lazy(
        "この修正のお願いは見つかりませんでした。担当課へお問い合わせください。"
    ),
    "correspondence.correction_closed_meanwhile": gettext_lazy(
        "申し訳ありません。受付番号 %(receipt_number)s の修正のお願いは、入力中に取り消されたか、すでに受け付け済みです。"
        "修正内容は反映されていません。"
    ),
    "correspondence.reply_received": gettext_lazy(
        "「%(procedure)s」の申請（受付番号：%(receipt_number)s）の担当者にメッセージを送りました。"
    ),
}
_SIMPLE.update(_SIMPLE_CORRESPONDENCE)


def _render_special(message: Message) -> str | None:
    code, params = message.code, message.params or {}
    if code in _STATUS_RENDERERS:
        return _STATUS_RENDERERS[code](params)
    if code in _CORRESPONDENCE_RENDERERS:
        return _CORRESPONDENCE_RENDERERS[code](_named(params))
    if code == "question":
        return _render_question(params)
    if code == "summary":
        return _render_summary(message)
    if code == "procedure.started":
        return _render_started(_named(params))
    if code == "procedure.completed":
        return _render_completed(_named(params))
    if code in ("step.message", "procedure.exited"):
        return _join(params.get("label") or "", params.get("help") or "") or _("ご案内は以上です。")
    if code == "error.image_too_large":
        return _fill(_("画像が大きすぎます。%(size)s以下の画像を送ってください。"), {"size": format_bytes(params.get("max_bytes"))})
    if code == "error.out_of_range":
        limits = _number_range(params.get("min"), params.get("max"), params.get("unit") or "")
        return _fill(_("%(range)sの範囲で入力してください。"), {"range": limits}) if limits else _("範囲外の値です。")
    if code == "error.bad_format":
        text_format = params.get("format")
        if text_format == "regex":
            return _join(_("入力の形式が正しくありません。"), params.get("hint") or "")
        return str(_BAD_FORMAT.get(text_format, _("入力の形式が正しくありません。")))
    if code == "error.date_not_allowed":
        reason = _DATE_REASONS.get(params.get("reason"))
        return _fill(str(reason), _date_params(params)) if reason else _("その日は選べません。別の日を選んでください。")
    if code == "error.wrong_input_type":
        return str(_WRONG_TYPE.get(params.get("expected"), _("この質問には、その形式ではお答えいただけません。")))
    return None


def render_message(message: Message) -> str:
    """The Japanese text of an engine message (never empty)."""
    text = _render_special(message)
    if text is None:
        template = _SIMPLE.get(message.code)
        params = _named(message.params or {})
        text = _fill(str(template), params) if template is not None else _("申し訳ありません。もう一度お試しください。")
    return text


# --------------------------------------------------------------------------
# Actions
# --------------------------------------------------------------------------

_ACTION_LABELS = {
    "action.done": gettext_lazy("選択完了"),
    "action.page_prev": gettext_lazy("前へ"),
    "action.page_next": gettext_lazy("次へ"),
    "action.yes": gettext_lazy("はい"),
    "action.no": gettext_lazy("いいえ"),
    "action.date_picker": gettext_lazy("日付を選ぶ"),
    "action.camera": gettext_lazy("カメラで撮る"),
    "action.camera_roll": gettext_lazy("写真を選ぶ"),
    "action.location": gettext_lazy("位置情報を送る"),
    "action.skip": gettext_lazy("スキップ"),
    "action.keep": gettext_lazy("変更しない"),
    "action.back": gettext_lazy("戻る"),
    "action.cancel": gettext_lazy("やめる"),
    "action.edit": gettext_lazy("修正する"),
    "action.submit": gettext_lazy("この内容で申し込む"),
    "action.confirm_cancel": gettext_lazy("はい、やめます"),
    "action.keep_going": gettext_lazy("いいえ、続けます"),
    "action.switch": gettext_lazy("はい、切り替えます"),
    "action.stay": gettext_lazy("いいえ、続けます"),
    "action.withdraw_confirm": gettext_lazy("はい、取り下げます"),
    "action.withdraw_keep": gettext_lazy("いいえ、取り下げません"),
    "action.resubmit": gettext_lazy("この内容で再提出する"),
    "action.correct": gettext_lazy("修正する"),
}


def render_action_label(action: Action) -> str:
    params = action.params or {}
    if action.code == "action.withdraw":
        return _fill(_("%(number)s番を取り下げる"), params)
    if action.code in ("action.choice", "action.start"):
        return str(params.get("label") or "")
    if action.code == "action.toggle":
        label = str(params.get("label") or "")
        return _fill(_("✓%(label)s"), {"label": label}) if params.get("selected") else label
    label = _ACTION_LABELS.get(action.code)
    return str(label) if label is not None else str(params.get("label") or action.code)


# --------------------------------------------------------------------------
# Spec problems (for staff)
# --------------------------------------------------------------------------

KIND_NAMES = {
    "short_text": gettext_lazy("一行テキスト"),
    "long_text": gettext_lazy("複数行テキスト"),
    "number": gettext_lazy("数値"),
    "date": gettext_lazy("日付"),
    "single_choice": gettext_lazy("選択（1つ）"),
    "multiple_choice": gettext_lazy("選択（複数）"),
    "yes_no": gettext_lazy("はい／いいえ"),
    "image": gettext_lazy("画像"),
    "location": gettext_lazy("位置情報"),
    "message": gettext_lazy("お知らせ"),
    "confirmation": gettext_lazy("確認"),
    "completion": gettext_lazy("完了"),
    "exit": gettext_lazy("終了"),
}

FORMAT_NAMES = {
    "none": gettext_lazy("指定なし"),
    "phone": gettext_lazy("電話番号"),
    "postal_code": gettext_lazy("郵便番号"),
    "email": gettext_lazy("メールアドレス"),
    "katakana": gettext_lazy("カタカナ"),
    "regex": gettext_lazy("正規表現"),
}

CONDITION_OP_NAMES = {
    "equals": gettext_lazy("等しい"),
    "one_of": gettext_lazy("いずれかに一致"),
    "compare": gettext_lazy("大小を比較"),
    "answered": gettext_lazy("回答あり"),
    "not_answered": gettext_lazy("回答なし"),
    "lt": gettext_lazy("より小さい"),
    "le": gettext_lazy("以下"),
    "gt": gettext_lazy("より大きい"),
    "ge": gettext_lazy("以上"),
    "eq": gettext_lazy("等しい"),
    "ne": gettext_lazy("等しくない"),
}

_EXPECTED_NAMES = {
    "text": gettext_lazy("文字列"),
    "boolean": gettext_lazy("はい／いいえ（真偽値）"),
    "integer": gettext_lazy("整数"),
    "number": gettext_lazy("数値"),
    "object": gettext_lazy("項目の集まり（オブジェクト）"),
    "list": gettext_lazy("一覧（リスト）"),
    "list of text": gettext_lazy("文字列の一覧"),
    "non-empty list": gettext_lazy("1つ以上の項目を含む一覧"),
    "list of weekday numbers 0-6": gettext_lazy("曜日番号（0〜6）の一覧"),
    "list of YYYY-MM-DD": gettext_lazy("YYYY-MM-DD形式の日付の一覧"),
}

_FIELD_NAMES = {
    "name": gettext_lazy("手続き名"),
    "description": gettext_lazy("説明"),
    "keywords": gettext_lazy("キーワード"),
    "receipt_prefix": gettext_lazy("受付番号の接頭辞"),
    "steps": gettext_lazy("ステップ一覧"),
    "computed": gettext_lazy("計算項目"),
    "key": gettext_lazy("キー"),
    "kind": gettext_lazy("種類"),
    "label": gettext_lazy("項目名"),
    "help_text": gettext_lazy("説明文"),
    "required": gettext_lazy("必須"),
    "sensitive": gettext_lazy("機微情報の扱い"),
    "condition": gettext_lazy("表示条件"),
    "options": gettext_lazy("設定"),
    "choices": gettext_lazy("選択肢"),
    "value": gettext_lazy("値"),
    "amount": gettext_lazy("金額"),
    "terms": gettext_lazy("計算式"),
    "step": gettext_lazy("参照するステップ"),
    "factor": gettext_lazy("係数"),
    "constant": gettext_lazy("定数"),
    "unit": gettext_lazy("単位"),
    "max_length": gettext_lazy("最大文字数"),
    "format": gettext_lazy("入力形式"),
    "pattern": gettext_lazy("正規表現"),
    "pattern_hint": gettext_lazy("形式の説明"),
    "min": gettext_lazy("最小値"),
    "max": gettext_lazy("最大値"),
    "integer": gettext_lazy("整数のみ"),
    "min_days": gettext_lazy("受付開始（何日後から）"),
    "max_days": gettext_lazy("受付終了（何日後まで）"),
    "weekdays": gettext_lazy("受付曜日"),
    "allow_holidays": gettext_lazy("祝日の受付"),
    "excluded_dates": gettext_lazy("受付しない日"),
    "min_selected": gettext_lazy("最少選択数"),
    "max_selected": gettext_lazy("最多選択数"),
    "max_bytes": gettext_lazy("最大ファイルサイズ"),
    "profile_target": gettext_lazy("住民の属性への保存先"),
}


def _item_label(spec_data, collection: str, index: int) -> str:
    if not isinstance(spec_data, dict):
        return ""
    items = spec_data.get(collection)
    if isinstance(items, list) and 0 <= index < len(items) and isinstance(items[index], dict):
        label = items[index].get("label")
        if isinstance(label, str):
            return label.strip()[:40]
    return ""


def _field_name(name) -> str:
    return str(_FIELD_NAMES.get(name, name)) if isinstance(name, str) else ""


def render_location(location: tuple, spec_data: dict | None = None) -> str:
    """("steps", 2, "options", "max_length") -> 3番目のステップ「お名前」の設定「最大文字数」."""
    location = tuple(location or ())
    if not location:
        return _("手続き全体")
    head, rest = location[0], location[1:]
    parts: list[str] = []
    if head in ("steps", "computed") and rest and isinstance(rest[0], int):
        index, rest = rest[0], rest[1:]
        label = _item_label(spec_data, head, index)
        if head == "steps":
            template = _("%(n)s番目のステップ「%(label)s」") if label else _("%(n)s番目のステップ")
        else:
            template = _("%(n)s番目の計算項目「%(label)s」") if label else _("%(n)s番目の計算項目")
        parts.append(_fill(template, {"n": index + 1, "label": label}))
    else:
        parts.append(_field_name(head))
    while rest:
        name, rest = rest[0], rest[1:]
        if name == "condition":
            parts.append(_("表示条件"))
            break  # the inside of a condition tree is not worth spelling out
        if name in ("choices", "terms") and rest and isinstance(rest[0], int):
            template = _("%(n)s番目の選択肢") if name == "choices" else _("%(n)s番目の項")
            parts.append(_fill(template, {"n": rest[0] + 1}))
            rest = rest[1:]
        elif name == "options" and rest:
            parts.append(_fill(_("設定「%(name)s」"), {"name": _field_name(rest[0])}))
            rest = rest[1:]
        else:
            parts.append(_field_name(name))
    return "の".join(part for part in parts if part)


def _names(known: str, names: dict) -> str:
    return "、".join(f"{names[item]}（{item}）" if item in names else item for item in known.split(", ") if item)


def _ref_name(ref, spec_data) -> str:
    if isinstance(spec_data, dict) and isinstance(spec_data.get("steps"), list):
        for item in spec_data["steps"]:
            if isinstance(item, dict) and item.get("key") == ref and isinstance(item.get("label"), str):
                return item["label"].strip()[:40] or str(ref)
    return str(ref)


_PROBLEMS = {
    "wrong_type": gettext_lazy("%(where)sの形式が正しくありません（%(expected)sで指定してください）。"),
    "missing": gettext_lazy("%(where)sが入力されていません。"),
    "too_long": gettext_lazy("%(where)sは%(max)s文字以内にしてください。"),
    "bad_receipt_prefix": gettext_lazy("%(where)sは半角の英大文字と数字、12文字以内にしてください。"),
    "too_many": gettext_lazy("%(where)sは%(max)s個までです。"),
    "unknown_kind": gettext_lazy("%(where)s：「%(kind)s」という種類はありません。使える種類：%(known)s"),
    "missing_key": gettext_lazy("%(where)sが設定されていません。"),
    "bad_key": gettext_lazy(
        "%(where)s：「%(key)s」は使えません。半角英小文字で始め、半角英小文字・数字・「_」で40文字以内にしてください。"
    ),
    "choices_not_allowed": gettext_lazy("%(where)s：この種類のステップには選択肢を設定できません。"),
    "unknown_format": gettext_lazy("%(where)s：「%(format)s」という入力形式はありません。使える形式：%(known)s"),
    "bad_pattern": gettext_lazy("%(where)s：正規表現の書き方が正しくありません。"),
    "min_above_max": gettext_lazy("%(where)s：最小が最大より大きくなっています。"),
    "no_weekdays": gettext_lazy("%(where)s：選べる曜日が1つもありません。"),
    "out_of_range": gettext_lazy("%(where)sは%(min)s〜%(max)sの範囲にしてください。"),
    "condition_too_deep": gettext_lazy("%(where)s：条件の入れ子が深すぎます。"),
    "unknown_condition_op": gettext_lazy("%(where)s：「%(op)s」という条件はありません。使える条件：%(known)s"),
    "no_choices": gettext_lazy("%(where)s：選択肢が1つもありません。"),
    "duplicate_choice": gettext_lazy("%(where)s：選択肢の値「%(values)s」が重複しています。"),
    "condition_unknown_step": gettext_lazy("%(where)s：存在しないステップ「%(ref)s」を参照しています。"),
    "condition_later_step": gettext_lazy(
        "%(where)s：条件で参照できるのは、このステップより前の質問だけです（「%(ref)s」は後ろにあります）。"
    ),
    "condition_not_input": gettext_lazy("%(where)s：「%(ref)s」は質問ではないため、条件に使えません。"),
    "condition_unknown_value": gettext_lazy("%(where)s：「%(values)s」は「%(ref)s」の選択肢にありません。"),
    "condition_compare_not_number": gettext_lazy("%(where)s：大小の比較は数値の質問にだけ使えます（「%(ref)s」）。"),
    "computed_unknown_step": gettext_lazy("%(where)s：存在しないステップ「%(ref)s」を参照しています。"),
    "computed_not_numeric": gettext_lazy(
        "%(where)s：「%(ref)s」は数値・選択・はい／いいえの質問ではないため、計算に使えません。"
    ),
    "bad_profile_target": gettext_lazy(
        "%(where)s：「%(target)s」は使えません。categories（受信カテゴリ）か attribute:属性のキー で指定してください。"
    ),
    "profile_target_sensitive": gettext_lazy(
        "%(where)s：機微情報のステップの回答は住民の属性に保存できません。保存先を外すか、機微情報の指定を外してください。"
    ),
    "profile_target_kind": gettext_lazy(
        "%(where)s：「%(kind)s」のステップの回答は住民の属性に保存できません。"
        "保存できるのは一行テキスト・数値・日付・選択（1つ）・選択（複数）・はい／いいえのステップです。"
    ),
    "profile_target_categories_kind": gettext_lazy(
        "%(where)s：受信カテゴリに保存できるのは「選択（複数）」のステップだけです。"
    ),
    "no_steps": gettext_lazy("ステップが1つもありません。"),
    "no_questions": gettext_lazy("質問のステップが1つもありません。"),
    "no_completion": gettext_lazy("完了ステップがありません。最後に完了ステップを追加してください。"),
    "no_confirmation": gettext_lazy("%(where)s：完了の前に、条件のない確認ステップが必要です。"),
    "unreachable": gettext_lazy("%(where)sは、その前の「%(after)s」で手続きが終わるため、表示されることがありません。"),
}


def problem_message(problem: Problem, spec_data: dict | None = None) -> str:
    """The Japanese text of a spec problem, located for staff (e.g. 3番目のステップ「お名前」の…)."""
    params = dict(problem.params or {})
    params["where"] = render_location(problem.location, spec_data)
    if problem.code == "wrong_type":
        params["expected"] = str(_EXPECTED_NAMES.get(params.get("expected"), params.get("expected") or ""))
    if problem.code == "unknown_kind":
        params["known"] = _names(params.get("known") or "", KIND_NAMES)
    if problem.code == "unknown_format":
        params["known"] = _names(params.get("known") or "", FORMAT_NAMES)
    if problem.code == "profile_target_kind":
        params["kind"] = str(KIND_NAMES.get(params.get("kind"), params.get("kind") or ""))
    if problem.code == "unknown_condition_op":
        params["known"] = _names(params.get("known") or "", CONDITION_OP_NAMES)
    if "ref" in params:
        params["ref"] = _ref_name(params["ref"], spec_data)
    if problem.code == "duplicate_key":
        if params.get("other"):
            return _fill(_("%(where)s：キー「%(key)s」が%(other)s番目のステップと重複しています。"), params)
        return _fill(_("%(where)s：キー「%(key)s」が重複しています。"), params)
    template = _PROBLEMS.get(problem.code)
    if template is None:
        return _fill(_("%(where)sの設定に問題があります（%(code)s）。"), {**params, "code": problem.code})
    return _fill(str(template), params)
