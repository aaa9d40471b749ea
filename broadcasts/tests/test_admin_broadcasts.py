"""The broadcast admin: composing without JSON, the chat preview, submit/approve/cancel buttons, scoping."""

from __future__ import annotations

import re

import pytest
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from audit import actions
from audit.models import AuditEntry
from broadcasts import compose, services
from broadcasts.admin import BroadcastAdmin
from broadcasts.models import Broadcast, BroadcastRun
from broadcasts.tests.composing import every_kind, member, png_bytes
from procedures.tests.factories import DepartmentFactory
from residents.models import Segment

ADD_URL = reverse("admin:broadcasts_broadcast_add")


@pytest.fixture(autouse=True)
def public_site(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    settings.GOVTECH_BASE_URL = "https://city.example.jp"


@pytest.fixture
def env(db):
    department = DepartmentFactory(name="環境課", code="env")
    other = DepartmentFactory(name="福祉課", code="welfare")
    author, author_client = member("author", department)
    colleague, colleague_client = member("colleague", department)
    outsider, outsider_client = member("outsider", other)
    return {
        "department": department,
        "other": other,
        "author": author,
        "author_client": author_client,
        "colleague_client": colleague_client,
        "outsider_client": outsider_client,
    }


def settings_form(department, **overrides) -> dict:
    data = {
        "title": "資源ごみの日",
        "department": department.pk,
        "audience": "everyone",
        "segment": "",
        "category": "",
        "send_at_0": "",
        "send_at_1": "",
        "recurrence": "none",
        "recurrence_until": "",
        "excluded_dates": "",
        "_save": "1",
    }
    return {**data, **overrides}


def url(name: str, *args) -> str:
    return reverse(f"admin:broadcasts_broadcast_{name}", args=args)


def notices(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def broadcast_of(env, **fields) -> Broadcast:
    values = {"title": "お知らせ", "department": env["department"], "created_by": env["author"]}
    return Broadcast.objects.create(**{**values, **fields})


def test_staff_create_a_broadcast_and_compose_messages_without_json(env):
    client = env["author_client"]
    response = client.post(ADD_URL, settings_form(env["department"]))
    assert response.status_code == 302, response.content.decode()[:2000]
    broadcast = Broadcast.objects.get()
    assert broadcast.created_by == env["author"] and broadcast.status == "draft"

    client.post(url("message_add", broadcast.pk, "text"), {"text": "今週土曜は資源ごみの日です。"})
    client.post(
        url("message_add", broadcast.pk, "buttons"),
        {
            "title": "ごみの出し方",
            "text": "分け方を確認できます",
            "action1_type": "uri",
            "action1_label": "分け方",
            "action1_value": "https://city.example.jp/gomi",
            "action2_type": "message",
            "action2_label": "収集日",
            "action2_value": "収集日",
        },
    )
    client.post(url("message_add", broadcast.pk, "image"), {"upload": SimpleUploadedFile("a.png", png_bytes())})
    client.post(
        url("message_add", broadcast.pk, "cards"),
        {
            "alt_text": "",
            "cards-TOTAL_FORMS": "2",
            "cards-INITIAL_FORMS": "0",
            "cards-MIN_NUM_FORMS": "0",
            "cards-MAX_NUM_FORMS": "12",
            "cards-0-title": "夏祭り",
            "cards-0-text": "8月10日",
            "cards-0-action1_type": "uri",
            "cards-0-action1_label": "詳しく",
            "cards-0-action1_value": "https://city.example.jp/matsuri",
            "cards-0-upload": SimpleUploadedFile("b.png", png_bytes()),
        },
    )

    broadcast.refresh_from_db()
    assert [m["kind"] for m in broadcast.messages] == ["text", "buttons", "image", "cards"]
    assert broadcast.messages[1]["actions"] == [
        {"type": "uri", "label": "分け方", "uri": "https://city.example.jp/gomi"},
        {"type": "message", "label": "収集日", "text": "収集日"},
    ]
    assert len(broadcast.messages[3]["cards"]) == 1 and broadcast.messages[3]["cards"][0]["image"]

    page = client.get(url("change", broadcast.pk)).content.decode()
    assert 'class="line-preview"' in page
    assert '<div class="bubble">今週土曜は資源ごみの日です。</div>' in page
    assert "<span>分け方</span>" in page and "https://city.example.jp/broadcasts/images/" in page


def test_an_invalid_message_is_shown_again_with_readable_errors_and_not_saved(env):
    broadcast = broadcast_of(env)
    response = env["author_client"].post(
        url("message_add", broadcast.pk, "flex"), {"alt_text": "お知らせ", "contents": '{"type": "bubble", "body": {'}
    )
    assert response.status_code == 200
    assert "JSON として読めません（1行目 29文字目）" in response.content.decode()

    response = env["author_client"].post(
        url("message_add", broadcast.pk, "flex"),
        {
            "alt_text": "お知らせ",
            "contents": '{"type": "bubble", "body": {"type": "box", "layout": "diagonal", "contents": []}}',
        },
    )
    assert "contents.body.layout: &#x27;diagonal&#x27; is not one of" in response.content.decode()
    broadcast.refresh_from_db()
    assert broadcast.messages == []


def test_a_sixth_message_is_refused(env):
    broadcast = broadcast_of(env, messages=[{"kind": "text", "text": f"{n}"} for n in range(5)])

    response = env["author_client"].post(url("message_add", broadcast.pk, "text"), {"text": "6通目"})

    assert notices(response) == ["メッセージは5個までです。"]
    broadcast.refresh_from_db()
    assert len(broadcast.messages) == 5


def test_emergency_needs_the_confirmation_checkbox(env):
    client = env["author_client"]
    response = client.post(ADD_URL, settings_form(env["department"], is_emergency="on"))
    assert response.status_code == 200
    assert "緊急配信にするには、確認のチェックを入れてください。" in response.content.decode()
    assert not Broadcast.objects.exists()

    response = client.post(ADD_URL, settings_form(env["department"], is_emergency="on", emergency_confirmed="on"))
    assert response.status_code == 302 and Broadcast.objects.get().is_emergency


def test_new_year_and_holiday_shortcuts_fill_the_excluded_dates(env):
    form = settings_form(
        env["department"],
        send_at_0="2026-12-01",
        send_at_1="18:00",
        recurrence="weekly",
        recurrence_weekdays=["1"],
        recurrence_until="2027-01-31",
        excluded_dates="2026/12/15",
        exclude_year_end="on",
        exclude_holidays="on",
    )
    response = env["author_client"].post(ADD_URL, form)
    assert response.status_code == 302
    assert Broadcast.objects.get().excluded_dates == [
        "2026-12-15",
        "2026-12-29",
        "2026-12-30",
        "2026-12-31",
        "2027-01-01",
        "2027-01-02",
        "2027-01-03",
        "2027-01-11",  # 成人の日
    ]


def test_submit_then_approval_by_a_second_staff_member_through_the_buttons(env):
    broadcast = broadcast_of(env, messages=[{"kind": "text", "text": "お知らせ"}], requires_approval=True)

    env["author_client"].post(url("submit", broadcast.pk))
    assert Broadcast.objects.get(pk=broadcast.pk).status == "awaiting_approval"
    page = env["author_client"].get(url("change", broadcast.pk)).content.decode()
    assert "ほかの職員の承認を待っています" in page and url("approve", broadcast.pk) not in page

    response = env["author_client"].post(url("approve", broadcast.pk))
    assert notices(response) == ["自分で作成した一斉配信は承認できません。ほかの職員に承認を依頼してください。"]

    page = env["colleague_client"].get(url("change", broadcast.pk)).content.decode()
    [shown] = re.findall(r'<input type="hidden" name="seen" value="([^"]+)">', page)
    response = env["colleague_client"].post(url("approve", broadcast.pk))  # a form without what was shown
    assert notices(response) == [
        "表示した後にこの一斉配信が変更されました。最新の内容を確かめてから、もう一度承認してください。"
    ]
    response = env["colleague_client"].post(url("approve", broadcast.pk), {"seen": shown})
    assert notices(response)[-1] == "承認しました。予約どおりに配信します。"
    assert Broadcast.objects.get(pk=broadcast.pk).status == "scheduled"
    assert AuditEntry.objects.filter(action=actions.BROADCAST_APPROVE).count() == 1

    env["colleague_client"].post(url("cancel", broadcast.pk))
    assert Broadcast.objects.get(pk=broadcast.pk).status == "cancelled"


def test_saving_settings_while_a_submit_lands_is_refused_and_undoes_nothing(env, monkeypatch):
    broadcast = broadcast_of(env, messages=[{"kind": "text", "text": "お知らせ"}], title="資源ごみの日")
    real_get_form = BroadcastAdmin.get_form

    def submitted_meanwhile(self, request, obj=None, **kwargs):
        # The page's save has read the broadcast as a draft; a submit from another tab commits now.
        services.broadcast_submit(broadcast_id=obj.pk, user=env["author"])
        return real_get_form(self, request, obj, **kwargs)

    monkeypatch.setattr(BroadcastAdmin, "get_form", submitted_meanwhile)
    response = env["author_client"].post(url("change", broadcast.pk), settings_form(env["department"], title="変更"))

    assert response.status_code == 200
    assert "ほかの職員が配信の手続きをしたため" in response.content.decode()
    after = Broadcast.objects.get(pk=broadcast.pk)
    assert (after.status, after.title) == ("scheduled", "資源ごみの日")
    assert after.next_run_at is not None  # the submit's schedule is kept


def test_saving_settings_keeps_the_messages_edited_on_their_own_page_meanwhile(env, monkeypatch):
    broadcast = broadcast_of(env, messages=[{"kind": "text", "text": "一つ目"}])
    real_get_form = BroadcastAdmin.get_form

    def messages_edited_meanwhile(self, request, obj=None, **kwargs):
        # The page's save has read the broadcast; its messages are saved from their own page now.
        two = [{"kind": "text", "text": "一つ目"}, {"kind": "text", "text": "二つ目"}]
        services.broadcast_messages_update(broadcast_id=obj.pk, messages=two, user=env["author"])
        return real_get_form(self, request, obj, **kwargs)

    monkeypatch.setattr(BroadcastAdmin, "get_form", messages_edited_meanwhile)
    response = env["author_client"].post(
        url("change", broadcast.pk), settings_form(env["department"], title="新しい件名")
    )

    assert response.status_code == 302
    after = Broadcast.objects.get(pk=broadcast.pk)
    assert after.title == "新しい件名" and [m["text"] for m in after.messages] == ["一つ目", "二つ目"]


def test_the_broadcast_page_tells_how_its_latest_run_went_and_links_to_the_runs(env):
    broadcast = broadcast_of(env, messages=[{"kind": "text", "text": "お知らせ"}], status="sent")
    BroadcastRun.objects.create(
        broadcast=broadcast,
        scheduled_for=timezone.now(),
        status="done",
        started_at=timezone.now(),
        recipients_total=500,
        delivered=480,
        failed=20,
    )
    page = env["colleague_client"].get(url("change", broadcast.pk)).content.decode()
    assert "配信 480 人／失敗 20 人／対象 500 人" in page
    assert "20 人に配信できませんでした" in page
    assert f"{reverse('admin:broadcasts_broadcastrun_changelist')}?broadcast__id__exact={broadcast.pk}" in page


def test_the_submit_button_asks_for_approval_when_the_department_requires_it(env):
    broadcast = broadcast_of(env, messages=[{"kind": "text", "text": "お知らせ"}], requires_approval=False)
    assert "承認を依頼する" not in env["author_client"].get(url("change", broadcast.pk)).content.decode()
    env["department"].broadcasts_need_approval = True
    env["department"].save()
    page = env["author_client"].get(url("change", broadcast.pk)).content.decode()
    assert "承認を依頼する" in page and "部署の設定で承認が必須のときは" in page


def test_the_approver_sends_it_back_with_a_reason_the_author_reads_on_the_page(env):
    broadcast = broadcast_of(env, messages=[{"kind": "text", "text": "お知らせ"}], requires_approval=True)
    env["author_client"].post(url("submit", broadcast.pk))
    page = env["colleague_client"].get(url("change", broadcast.pk)).content.decode()
    assert url("return", broadcast.pk) in page and "下書きに戻す（差し戻し）" in page

    response = env["colleague_client"].post(url("return", broadcast.pk), {"reason": "件名に日付を入れてください。"})

    assert notices(response) == ["下書きに戻しました。直してから、もう一度配信の手続きをしてください。"]
    page = env["author_client"].get(url("change", broadcast.pk)).content.decode()
    assert "差し戻しの理由" in page and "件名に日付を入れてください。" in page
    assert url("return", broadcast.pk) not in page  # a draft has nothing to send back
    assert env["author_client"].get(url("return", broadcast.pk)).status_code == 405
    assert env["outsider_client"].post(url("return", broadcast.pk)).status_code == 404


def test_a_submitted_broadcast_is_no_longer_editable(env):
    broadcast = broadcast_of(env, messages=[{"kind": "text", "text": "お知らせ"}], status="scheduled")

    response = env["author_client"].post(url("message_add", broadcast.pk, "text"), {"text": "追加"})

    assert notices(response) == ["下書きの一斉配信だけ、メッセージを変更できます。"]
    assert len(Broadcast.objects.get(pk=broadcast.pk).messages) == 1


def test_another_departments_broadcast_is_not_found_by_id(env):
    broadcast = broadcast_of(env, messages=[{"kind": "text", "text": "お知らせ"}])
    client = env["outsider_client"]

    assert client.get(url("change", broadcast.pk)).status_code == 404
    assert client.get(url("message_add", broadcast.pk, "text")).status_code == 404
    assert client.post(url("submit", broadcast.pk)).status_code == 404
    assert client.post(url("cancel", broadcast.pk)).status_code == 404
    assert "お知らせ" not in client.get(url("changelist")).content.decode()
    assert Broadcast.objects.get(pk=broadcast.pk).status == "draft"


def test_segment_choices_are_own_departments_and_city_wide_ones(env):
    Segment.objects.create(name="環境課の対象", department=env["department"])
    Segment.objects.create(name="全庁の対象", department=None)
    Segment.objects.create(name="福祉課の対象", department=env["other"])

    page = env["author_client"].get(ADD_URL).content.decode()

    assert "環境課の対象" in page and "全庁の対象" in page and "福祉課の対象" not in page


def test_every_kinds_editor_opens_filled_in_and_saves_back_the_same_message(env):
    image = compose.store_image(png_bytes())
    originals = every_kind(image)
    client = env["author_client"]
    for message in originals:
        broadcast = broadcast_of(env, messages=[message])
        page = client.get(url("message_edit", broadcast.pk, 0))
        assert page.status_code == 200
        form = page.context["editor"]
        data = {}
        for bound in [*form, *(field for card in getattr(form, "cards", []) for field in card)]:
            value = bound.value()
            if value not in (None, "", False):
                data[bound.html_name] = value
        if getattr(form, "cards", None) is not None:
            management = form.cards.management_form
            data.update({field.html_name: field.value() for field in management})

        response = client.post(url("message_edit", broadcast.pk, 0), data)

        assert response.status_code == 302, (message["kind"], response.context["editor"].errors)
        assert Broadcast.objects.get(pk=broadcast.pk).messages == [message]
