"""The "試す" simulator: the staff-only page, its JSON endpoints and the simulator channel adapter."""

from __future__ import annotations

import datetime as dt
import io
import json

import pytest
from django.contrib.auth import get_user_model
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from PIL import Image

from procedures import simulator as channel
from procedures.engine.types import Event
from procedures.models import Application, ConversationSession, ProcedureVersion
from procedures.selectors import application_list
from procedures.services import COMPLETION_CODE, draft_get_or_create, version_publish
from procedures.tests.factories import (
    CompletionStepFactory,
    ConfirmationStepFactory,
    DateStepFactory,
    ImageStepFactory,
    LocationStepFactory,
    ProcedureVersionFactory,
    ShortTextStepFactory,
    SingleChoiceStepFactory,
    StaffUserFactory,
    published_version,
    valid_draft,
)

pytestmark = pytest.mark.django_db

PAGE = reverse("procedures:simulator")
SEND = reverse("procedures:simulator_send")
UPLOAD = reverse("procedures:simulator_upload")
RESET = reverse("procedures:simulator_reset")


# --------------------------------------------------------------------------
# Helpers: a staff member talking to the simulator through its JSON endpoints
# --------------------------------------------------------------------------


class Chat:
    """Drives the simulator the way the page does: it only sends back the events it was given."""

    def __init__(self, client, version: ProcedureVersion):
        self.client = client
        self.version = version
        self.last: dict = {}
        self.seen_events: list[dict] = []

    @property
    def ids(self) -> dict:
        return {"procedure": self.version.procedure_id, "version": self.version.pk}

    def post(self, event: dict, expect: int = 200) -> dict:
        response = self.client.post(SEND, {**self.ids, "event": event}, content_type="application/json")
        assert response.status_code == expect, response.content.decode()
        data = response.json()
        if expect == 200:
            self.last = data
            for message in data["messages"]:
                actions = message["actions"] + [row["edit"] for row in message["rows"] if row["edit"]]
                self.seen_events += [action["event"] for action in actions if action["event"]]
        return data

    def start(self) -> dict:
        response = self.client.post(RESET, self.ids, content_type="application/json")
        assert response.status_code == 200
        return self.post({"type": "start", "value": self.version.procedure_id})

    def say(self, text: str) -> dict:
        return self.post({"type": "text", "text": text})

    def actions(self) -> list[dict]:
        return [action for message in self.last["messages"] for action in message["actions"]]

    def quick_replies(self) -> list[dict]:
        """The chips the page shows: the actions of the last question in the reply."""
        questions = [m for m in self.last["messages"] if m["layout"] == "question" and m["actions"]]
        return questions[-1]["actions"] if questions else []

    def action(self, label: str) -> dict:
        matches = [action for action in self.actions() if action["label"] == label]
        assert matches, f"no action {label!r} in {[a['label'] for a in self.actions()]}"
        return matches[0]

    def tap(self, label: str) -> dict:
        return self.post(self.action(label)["event"])

    def texts(self) -> list[str]:
        return [message["text"] for message in self.last["messages"]]

    def summary(self) -> dict:
        summaries = [m for m in self.last["messages"] if m["layout"] == "summary"]
        assert summaries, self.texts()
        return summaries[-1]

    def upload(self, upload, step: str, expect: int = 200) -> dict:
        action = next(a for a in self.actions() if a["kind"] in ("camera", "camera_roll"))
        assert action["event"]["step"] == step
        response = self.client.post(
            UPLOAD,
            {**self.ids, "step": step, "session": action["event"].get("session", ""), "file": upload},
        )
        assert response.status_code == expect, response.content.decode()
        data = response.json()
        if expect == 200:
            self.last = data
        return data


def staff_user_id(client) -> int:
    return int(client.session["_auth_user_id"])


def complete_valid_draft(chat: Chat) -> dict:
    """valid_draft(): item → count → name → confirmation → submit."""
    chat.start()
    assert [a["label"] for a in chat.quick_replies()][:3] == ["タンス", "ベッド", "その他"]
    chat.tap("タンス")
    chat.say("2")
    chat.say("山田太郎")
    summary = chat.summary()
    assert summary["heading"] == "入力内容を確認してください。"
    assert summary["notes"] == ["手数料：1200円"]  # computed values under the rows
    assert [row["label"] for row in summary["rows"]] == ["品目", "個数", "お名前"]
    return chat.tap("この内容で申し込む")


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


# --------------------------------------------------------------------------
# Access
# --------------------------------------------------------------------------


def test_simulator_requires_staff_login(client):
    response = client.get(PAGE)
    assert response.status_code == 302
    login = reverse("admin:login")
    assert response["Location"].startswith(login) and "next=/procedures/simulator/" in response["Location"]

    plain = get_user_model().objects.create_user("resident", password="a long enough password")
    client.force_login(plain)
    assert client.get(PAGE).status_code == 302


def test_json_endpoints_refuse_non_staff_with_403_json(client):
    for url in (SEND, UPLOAD, RESET):
        response = client.post(url, {}, content_type="application/json")
        assert response.status_code == 403
        assert "ログイン" in response.json()["error"]


def test_root_redirects_to_simulator_and_login_comes_back(client):
    response = client.get("/")
    assert response.status_code == 302 and response["Location"] == PAGE
    user = StaffUserFactory()
    client.force_login(user)
    assert client.get(PAGE).status_code == 200


def test_json_endpoints_need_a_csrf_token():
    user = StaffUserFactory()
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)
    version = published_version()
    body = {"procedure": version.procedure_id, "version": version.pk, "event": {"type": "sticker"}}
    assert strict.post(SEND, body, content_type="application/json").status_code == 403
    strict.get(PAGE)  # sets the CSRF cookie, as the page does
    token = strict.cookies["csrftoken"].value
    response = strict.post(SEND, body, content_type="application/json", headers={"X-CSRFToken": token})
    assert response.status_code == 200


def test_send_only_accepts_post(admin_client):
    assert admin_client.get(SEND).status_code == 405


# --------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------


def test_page_lists_every_procedure_with_its_draft_and_published_versions(admin_client):
    first = published_version(name="粗大ごみの収集")
    draft = draft_get_or_create(procedure=first.procedure)
    other = valid_draft(name="住民票の写し")

    response = admin_client.get(PAGE)
    assert response.status_code == 200
    html = response.content.decode()
    assert "粗大ごみの収集 第1版（公開中）" in html
    assert "粗大ごみの収集 第2版（下書き）" in html
    assert "住民票の写し 第1版（下書き）" in html
    assert response.context["config"]["version"] is None  # nothing chosen yet

    response = admin_client.get(PAGE, {"procedure": first.procedure_id})
    assert response.context["selected_version"].pk == draft.pk  # the draft is what staff work on
    response = admin_client.get(PAGE, {"procedure": first.procedure_id, "version": first.pk})
    config = response.context["config"]
    assert (config["procedure"], config["version"]) == (first.procedure_id, first.pk)
    assert config["urls"] == {"send": SEND, "upload": UPLOAD, "reset": RESET}
    assert 'id="sim-config"' in response.content.decode()
    response = admin_client.get(PAGE, {"version": other.pk})
    assert response.context["selected_version"].pk == other.pk


def test_page_refuses_a_version_of_another_procedure(admin_client):
    one = published_version()
    two = published_version()
    response = admin_client.get(PAGE, {"procedure": one.procedure_id, "version": two.pk})
    assert response.status_code == 200
    assert response.context["selected_version"] is None
    assert "見つかりません" in response.content.decode()
    response = admin_client.get(PAGE, {"procedure": "abc"})
    assert response.context["selected_version"] is None


def test_page_lists_what_still_blocks_publishing_a_draft(admin_client):
    draft = ProcedureVersionFactory()
    ShortTextStepFactory(version=draft, key="name", label="お名前")
    response = admin_client.get(PAGE, {"version": draft.pk})
    assert response.context["spec_problems"]  # no confirmation, no completion
    assert response.context["config"]["version"] == draft.pk  # it can still be tried


# --------------------------------------------------------------------------
# Conversations
# --------------------------------------------------------------------------


def test_staff_completes_published_procedure_and_gets_test_application(admin_client):
    version = published_version(name="粗大ごみの収集")
    chat = Chat(admin_client, version)

    data = complete_valid_draft(chat)

    application = Application.objects.get()
    assert application.is_test is True
    assert application.line_user_id == f"sim-{staff_user_id(admin_client)}"
    assert application.version == version
    assert application.answers == {"item": "tansu", "count": 2, "name": "山田太郎"}
    assert data["applications"] == [
        {
            "id": application.pk,
            "receipt_number": application.receipt_number,
            "is_test": True,
            "admin_url": reverse("admin:procedures_application_change", args=[application.pk]),
        }
    ]
    assert application.receipt_number.startswith("TEST-")
    completed = [m for m in data["messages"] if m["code"] == COMPLETION_CODE]
    assert completed and application.receipt_number in completed[0]["text"]
    assert application not in application_list()
    # The admin link opens the test application.
    assert admin_client.get(data["applications"][0]["admin_url"]).status_code == 200


def test_simulator_uses_its_own_partner_and_never_a_residents_session(admin_client):
    version = published_version()
    ConversationSession.objects.create(line_user_id="U" + "0" * 32, state={"keep": "me"})
    Chat(admin_client, version).start()
    assert ConversationSession.objects.get(line_user_id="U" + "0" * 32).state == {"keep": "me"}
    assert ConversationSession.objects.filter(line_user_id=f"sim-{staff_user_id(admin_client)}").exists()


def test_simulator_can_try_a_draft_before_publishing(admin_client):
    draft = valid_draft(name="下書きの手続き")
    assert not draft.procedure.is_open and draft.procedure.current_version is None
    chat = Chat(admin_client, draft)

    data = complete_valid_draft(chat)

    application = Application.objects.get()
    assert application.is_test and application.version_id == draft.pk
    assert data["applications"][0]["receipt_number"] == application.receipt_number
    draft.refresh_from_db()
    assert draft.is_draft  # trying it published nothing


def test_chosen_older_published_version_is_the_one_tried(admin_client):
    first = published_version()
    draft = draft_get_or_create(procedure=first.procedure)
    draft.steps.get(key="item").choices.filter(value="bed").delete()
    second = version_publish(version=draft)
    assert first.procedure.__class__.objects.get(pk=first.procedure_id).current_version == second

    chat = Chat(admin_client, first)
    chat.start()
    assert "ベッド" in [a["label"] for a in chat.quick_replies()]
    chat = Chat(admin_client, second)
    chat.start()
    assert "ベッド" not in [a["label"] for a in chat.quick_replies()]


def test_choices_are_rendered_as_quick_replies_including_paging(admin_client):
    version = ProcedureVersionFactory()
    SingleChoiceStepFactory(
        version=version, key="ward", label="お住まいの地区", choices=[(f"w{n}", f"地区{n}") for n in range(1, 21)]
    )
    ConfirmationStepFactory(version=version, key="confirm")
    CompletionStepFactory(version=version, key="done")
    chat = Chat(admin_client, version)

    chat.start()
    labels = [a["label"] for a in chat.quick_replies()]
    assert labels[:11] == [f"地区{n}" for n in range(1, 12)]
    assert "次へ" in labels and "前へ" not in labels and "やめる" in labels
    assert all(a["kind"] == "postback" and a["event"] for a in chat.quick_replies())

    chat.tap("次へ")
    labels = [a["label"] for a in chat.quick_replies()]
    assert labels[:9] == [f"地区{n}" for n in range(12, 21)]
    assert "前へ" in labels and "次へ" not in labels
    chat.tap("地区15")
    assert chat.summary()["rows"][0]["value"] == "地区15"


def test_date_picker_action_carries_min_and_max(admin_client):
    version = ProcedureVersionFactory()
    DateStepFactory(version=version, key="day", label="収集日", min_days=3, max_days=30)
    ConfirmationStepFactory(version=version, key="confirm")
    CompletionStepFactory(version=version, key="done")
    chat = Chat(admin_client, version)

    chat.start()
    picker = next(a for a in chat.quick_replies() if a["kind"] == "date_picker")
    today = timezone.localdate()
    assert picker["options"]["min"] == (today + dt.timedelta(days=3)).isoformat()
    assert picker["options"]["max"] == (today + dt.timedelta(days=30)).isoformat()
    assert picker["event"]["type"] == "date" and picker["event"]["step"] == "day"

    too_early = {**picker["event"], "value": today.isoformat()}
    chat.post(too_early)
    assert any("以降の日付" in text for text in chat.texts())
    day = (today + dt.timedelta(days=5)).isoformat()
    chat.post({**picker["event"], "value": day})
    assert chat.summary()["rows"][0]["key"] == "day"


def test_image_upload_is_stored_and_answers_the_step(admin_client, media_root):
    version = ProcedureVersionFactory()
    ImageStepFactory(version=version, key="photo", label="写真")
    ConfirmationStepFactory(version=version, key="confirm")
    CompletionStepFactory(version=version, key="done")
    chat = Chat(admin_client, version)
    chat.start()

    chat.upload(SimpleUploadedFile("a.png", png_bytes(), content_type="image/png"), "photo")

    row = chat.summary()["rows"][0]
    assert row["key"] == "photo" and row["value"] == "画像1枚"
    chat.tap("この内容で申し込む")
    stored = Application.objects.get().answers["photo"]
    assert stored["content_type"] == "image/png" and stored["size"] == len(png_bytes())
    assert stored["ref"].startswith("simulator/") and default_storage.exists(stored["ref"])


def test_non_image_upload_is_reasked_with_reason(admin_client, media_root):
    version = ProcedureVersionFactory()
    ImageStepFactory(version=version, key="photo", label="写真")
    ConfirmationStepFactory(version=version, key="confirm")
    CompletionStepFactory(version=version, key="done")
    chat = Chat(admin_client, version)
    chat.start()

    # Claims to be a PNG, but is not one.
    data = chat.upload(SimpleUploadedFile("notes.png", b"just some text", content_type="image/png"), "photo")

    codes = [m["code"] for m in data["messages"]]
    assert codes == ["error.image_type", "question"]
    assert "JPEGまたはPNG" in data["messages"][0]["text"]
    assert not media_root.exists() or not any(media_root.rglob("*.*"))  # nothing kept


def test_image_over_the_steps_limit_is_reasked_and_over_the_upload_limit_refused(admin_client, media_root, settings):
    version = ProcedureVersionFactory()
    ImageStepFactory(version=version, key="photo", label="写真", max_bytes=10)
    ConfirmationStepFactory(version=version, key="confirm")
    CompletionStepFactory(version=version, key="done")
    chat = Chat(admin_client, version)
    chat.start()

    data = chat.upload(SimpleUploadedFile("a.png", png_bytes(), content_type="image/png"), "photo")
    assert data["messages"][0]["code"] == "error.image_too_large"

    settings.SIMULATOR_UPLOAD_MAX_BYTES = 20
    error = chat.upload(SimpleUploadedFile("a.png", png_bytes(), content_type="image/png"), "photo", expect=413)
    assert error["error"] == "ファイルが大きすぎます。20バイト以下の画像を選んでください。"


def test_location_and_sticker_and_typed_commands(admin_client):
    version = ProcedureVersionFactory()
    ShortTextStepFactory(version=version, key="name", label="お名前")
    LocationStepFactory(version=version, key="place", label="場所")
    ConfirmationStepFactory(version=version, key="confirm")
    CompletionStepFactory(version=version, key="done")
    chat = Chat(admin_client, version)
    chat.start()

    chat.post({"type": "sticker"})
    assert chat.last["messages"][-1]["code"] == "question"  # re-asked, nothing answered
    chat.say("山田")
    location = next(a for a in chat.actions() if a["kind"] == "location")
    chat.post({**location["event"], "data": {"latitude": 35.6895, "longitude": 139.6917, "address": "市役所"}})
    assert chat.summary()["rows"][1]["value"] == "市役所"

    chat.say("戻る")
    assert chat.last["messages"][-1]["code"] == "question"
    chat.say("やめる")
    assert chat.last["messages"][-1]["layout"] == "confirm"


def test_sensitive_answer_is_masked_in_summary(admin_client):
    chat = Chat(admin_client, published_version())
    chat.start()
    chat.tap("タンス")
    chat.say("2")
    response = admin_client.post(
        SEND, {**chat.ids, "event": {"type": "text", "text": "機微太郎"}}, content_type="application/json"
    )
    assert "機微太郎" not in response.content.decode("utf-8")
    chat.last = response.json()
    rows = {row["key"]: row for row in chat.summary()["rows"]}
    assert rows["name"]["masked"] is True and "●" in rows["name"]["value"]
    assert rows["item"]["masked"] is False and rows["item"]["value"] == "タンス"
    assert all(row["edit"]["label"] == "修正する" for row in rows.values())

    chat.post(rows["name"]["edit"]["event"])  # 変更 on the masked row asks again
    assert chat.last["messages"][-1]["code"] == "question"
    assert "機微太郎" not in json.dumps(chat.last, ensure_ascii=False)


def test_reset_clears_the_session(admin_client):
    version = published_version()
    chat = Chat(admin_client, version)
    chat.start()
    chat.tap("タンス")
    partner = f"sim-{staff_user_id(admin_client)}"
    assert ConversationSession.objects.get(line_user_id=partner).state["session"]

    response = admin_client.post(RESET, chat.ids, content_type="application/json")

    assert response.status_code == 200 and response.json()["ok"] is True
    assert not ConversationSession.objects.filter(line_user_id=partner).exists()
    chat.start()
    assert "タンス" in [a["label"] for a in chat.quick_replies()]  # from the first question again


def test_every_event_handed_out_comes_back_unchanged(admin_client):
    chat = Chat(admin_client, published_version())
    complete_valid_draft(chat)
    assert chat.seen_events
    for data in chat.seen_events:
        event = channel.event_from_dict(data)
        assert channel.event_to_dict(event) == data


# --------------------------------------------------------------------------
# What the browser sends is validated: 400 with a Japanese reason, never a 500
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "event",
    [
        {"type": "evil"},
        {"type": "image", "step": "item", "data": {"ref": "../../etc/passwd", "content_type": "image/png", "size": 1}},
        {"type": "start", "value": "1; DROP TABLE"},
        {"type": "start", "value": True},
        {"type": "text", "text": 42},
        {"type": "text", "text": "   "},
        {"type": "text", "text": "x" * 5001},
        {"type": "text", "text": "hi", "state": {"session": None}},
        {"type": "choice", "step": "item", "value": {"nested": 1}},
        {"type": "choice", "step": "Robert'); --", "value": "tansu"},
        {"type": "command", "name": "../submit"},
        {"type": "command", "name": "edit", "value": ["a"]},
        {"type": "date", "step": "day", "value": "2026-02-30"},
        {"type": "date", "step": "day", "value": "tomorrow"},
        {"type": "location", "data": {"latitude": 95, "longitude": 0}},
        {"type": "location", "data": "here"},
        {"type": "sticker", "data": {"package": 1}},
        "text",
        None,
    ],
)
def test_forged_event_type_is_rejected_with_400(admin_client, event):
    version = published_version()
    response = admin_client.post(
        SEND, {"procedure": version.procedure_id, "version": version.pk, "event": event},
        content_type="application/json",
    )
    assert response.status_code == 400
    message = response.json()["error"]
    assert message and any("\u3040" <= ch <= "\u30ff" or "\u4e00" <= ch <= "\u9fff" for ch in message)
    assert not Application.objects.exists()


def test_bad_requests_get_json_errors(admin_client):
    version = published_version()
    other = published_version()
    good_event = {"type": "sticker"}

    def post(body, **kwargs):
        kwargs.setdefault("content_type", "application/json")
        return admin_client.post(SEND, body, **kwargs)

    assert post("{not json", content_type="application/json").status_code == 400
    assert post(json.dumps([1, 2])).status_code == 400
    assert post({"procedure": version.procedure_id, "version": version.pk}).status_code == 400  # no event
    assert post({"procedure": "x", "version": version.pk, "event": good_event}).status_code == 400
    assert post({"procedure": version.procedure_id, "version": other.pk, "event": good_event}).status_code == 404
    assert post({"procedure": version.procedure_id, "version": 999999, "event": good_event}).status_code == 404
    response = admin_client.post(SEND, {"procedure": version.procedure_id}, content_type="multipart/form-data; boundary=x")
    assert response.status_code == 415
    for response in (post("{not json"), post({"procedure": "x", "version": 1, "event": good_event})):
        assert response["Content-Type"].startswith("application/json") and response.json()["error"]


def test_upload_over_the_limit_is_refused_before_the_body_is_read(admin_client, media_root, settings):
    version = published_version()
    settings.SIMULATOR_UPLOAD_MAX_BYTES = 1024
    big = SimpleUploadedFile("big.png", b"\x89PNG" + b"0" * 200_000, content_type="image/png")
    response = admin_client.post(UPLOAD, {"procedure": version.procedure_id, "version": version.pk, "file": big})
    assert response.status_code == 413
    assert response.json()["error"] == "ファイルが大きすぎます。1KB以下の画像を選んでください。"
    assert not media_root.exists() or not any(media_root.rglob("*.*"))


def test_upload_needs_a_csrf_token(media_root):
    version = published_version()
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(StaffUserFactory())
    png = SimpleUploadedFile("a.png", png_bytes(), content_type="image/png")
    response = strict.post(UPLOAD, {"procedure": version.procedure_id, "version": version.pk, "file": png})
    assert response.status_code == 403
    assert not media_root.exists() or not any(media_root.rglob("*.*"))


def test_upload_validates_its_fields(admin_client, media_root):
    version = published_version()
    ids = {"procedure": version.procedure_id, "version": version.pk}
    assert admin_client.post(UPLOAD, ids).status_code == 400  # no file
    png = SimpleUploadedFile("a.png", png_bytes(), content_type="image/png")
    response = admin_client.post(UPLOAD, {**ids, "step": "Bad Key", "file": png})
    assert response.status_code == 400 and response.json()["error"]
    png = SimpleUploadedFile("a.png", png_bytes(), content_type="image/png")
    assert admin_client.post(UPLOAD, {"procedure": 1, "version": "x", "file": png}).status_code == 400


# --------------------------------------------------------------------------
# The channel adapter on its own
# --------------------------------------------------------------------------


def test_event_dicts_leave_out_defaults_and_round_trip():
    event = Event(type="command", name="page", value=1, step="ward", session="1-2-3")
    data = channel.event_to_dict(event)
    assert data == {"type": "command", "name": "page", "value": 1, "step": "ward", "session": "1-2-3"}
    assert channel.event_from_dict(data) == event
    assert channel.event_to_dict(None) is None


def test_location_data_is_normalised():
    data = channel.location_data({"latitude": "35.5", "longitude": 139, "address": " 市役所 "})
    assert data == {"latitude": 35.5, "longitude": 139.0, "address": "市役所", "title": ""}
    with pytest.raises(channel.SimulatorInputError):
        channel.location_data({"latitude": float("nan"), "longitude": 0})
