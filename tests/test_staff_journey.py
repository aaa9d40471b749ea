"""A staff member's whole journey with a branching procedure, driven only through the pages and endpoints.

Build 犬の登録申請 in the admin (a choice, a date asked only for 死亡届, the dog's name, a sensitive
phone number, a confirmation and a completion), read the condition back in words and in the flow
picture, try the draft in the simulator, publish it, find the test application in the admin, and
check that the published version still branches. The database is only read, to assert.
"""

from __future__ import annotations

import datetime as dt
import html as html_module
import json
import re

import pytest
from django.urls import reverse
from django.utils import timezone

from procedures.models import (
    Application,
    DateStep,
    Procedure,
    ProcedureVersion,
    ShortTextStep,
    SingleChoiceStep,
    Step,
)
from procedures.tests.admin_browser import form_data, messages_of
from procedures.tests.factories import ProcedureVersionFactory
from procedures.texts import format_date
from staff.models import Department

pytestmark = pytest.mark.django_db

PHONE = "090-1234-5678"
MASK = "●●●●"

# --------------------------------------------------------------------------
# Helpers: what a browser does with the admin pages and the simulator page
# --------------------------------------------------------------------------


def version_url(version_id: int) -> str:
    return reverse("admin:procedures_procedureversion_change", args=[version_id])


def add_step_kinds(page_html: str) -> tuple[str, dict[str, str]]:
    """The version page's ステップを追加 form: its action and {kind label: ct_id} of the kind select."""
    form = re.search(
        r'<form method="get" action="([^"]+)" class="[^"]*procedure-add-step[^"]*">(.*?)</form>', page_html, re.S
    )
    assert form, "the draft page has no ステップを追加 form"
    assert "ステップを追加" in form.group(2)
    kinds = {
        html_module.unescape(label): ct
        for ct, label in re.findall(r'<option value="(\d+)">([^<]+)</option>', form.group(2))
    }
    return html_module.unescape(form.group(1)), kinds


def add_step(client, version_id: int, kind_label: str, fields: dict, choices: list[tuple[str, str]] = (), offered=None):
    """Pick the kind on the draft page, open the add form it leads to, fill it in and save it.

    `choices` are typed into the 選択肢 inline; a second row is added the way the admin's
    「選択肢を追加」 link does (one more form, TOTAL_FORMS raised). `offered`: the questions the
    condition builder must offer (only the earlier ones).
    """
    version_page = client.get(version_url(version_id))
    assert version_page.status_code == 200
    action, kinds = add_step_kinds(version_page.content.decode())
    assert kind_label in kinds, sorted(kinds)
    add_url = f"{action}?version={version_id}&ct_id={kinds[kind_label]}"
    form_page = client.get(add_url)
    assert form_page.status_code == 200
    assert str(form_page.context["adminform"].form["version"].value()) == str(version_id)
    if offered is not None:
        choices_offered = form_page.context["adminform"].form.fields["rule1_step"].choices
        assert [key for key, _label in choices_offered if key] == offered
    data = form_data(form_page)
    data.update(fields)
    if choices:
        prefix = next(inline.formset.prefix for inline in form_page.context["inline_admin_formsets"])
        data[f"{prefix}-TOTAL_FORMS"] = str(len(choices))
        for index, (value, label) in enumerate(choices):
            data.update(
                {
                    f"{prefix}-{index}-position": str(index + 1),
                    f"{prefix}-{index}-value": value,
                    f"{prefix}-{index}-label": label,
                    f"{prefix}-{index}-amount": "0",
                }
            )
    response = client.post(add_url, data)
    assert response.status_code == 302, response.context and (
        response.context["adminform"].form.errors,
        [inline.formset.errors for inline in response.context["inline_admin_formsets"]],
    )
    assert response.url == version_url(version_id) + "#steps"
    return Step.objects.get(version_id=version_id, key=fields["key"])


def sim_config(page_html: str) -> dict:
    """The configuration the simulator page hands its script (json_script "sim-config")."""
    match = re.search(r'<script id="sim-config" type="application/json">(.*?)</script>', page_html, re.S)
    assert match, "the simulator page has no sim-config"
    return json.loads(match.group(1))


class Phone:
    """The simulator page's chat: starts as the page does and only sends back events it was given."""

    def __init__(self, client, config: dict):
        self.client = client
        self.config = config
        self.last: dict = {}
        self.raw = ""

    def post(self, url_name: str, body: dict) -> dict:
        response = self.client.post(
            self.config["urls"][url_name],
            {"procedure": self.config["procedure"], "version": self.config["version"], **body},
            content_type="application/json",
        )
        assert response.status_code == 200, response.content.decode()
        self.raw = response.content.decode()
        return response.json()

    def send(self, event: dict) -> dict:
        self.last = self.post("send", {"event": event})
        return self.last

    def start(self) -> dict:
        assert self.post("reset", {})["ok"] is True
        return self.send({"type": "start", "value": self.config["procedure"]})

    def say(self, text: str) -> dict:
        return self.send({"type": "text", "text": text})

    def question(self) -> dict:
        questions = [m for m in self.last["messages"] if m["layout"] == "question"]
        assert questions, [m["text"] for m in self.last["messages"]]
        return questions[-1]

    def actions(self) -> list[dict]:
        return [action for message in self.last["messages"] for action in message["actions"]]

    def tap(self, label: str) -> dict:
        matches = [action for action in self.actions() if action["label"] == label]
        assert matches, f"no {label!r} in {[a['label'] for a in self.actions()]}"
        return self.send(matches[0]["event"])

    def summary(self) -> dict:
        summaries = [m for m in self.last["messages"] if m["layout"] == "summary"]
        assert summaries, [m["text"] for m in self.last["messages"]]
        return summaries[-1]


def open_simulator(client, procedure_id: int) -> tuple[Phone, dict]:
    """Follow the 試す link of the procedure list to the simulator page; the chat the page would run."""
    listing = client.get(reverse("admin:procedures_procedure_changelist")).content.decode()
    link = reverse("procedures:simulator") + f"?procedure={procedure_id}"
    assert html_module.escape(link) in listing or link in listing
    page = client.get(link)
    assert page.status_code == 200
    config = sim_config(page.content.decode())
    return Phone(client, config), config


def svg_of(page_html: str) -> str:
    match = re.search(r'<svg xmlns="http://www.w3.org/2000/svg" class="procedure-flow".*?</svg>', page_html, re.S)
    assert match, "the flow page has no picture"
    return match.group(0)


def connector_labels(svg: str) -> dict[str, list[str]]:
    """The labels drawn along the flow picture's connectors: {"branch": [...], "other": [...]}."""
    labels: dict[str, list[str]] = {"branch": [], "other": []}
    for css, spans in re.findall(r'<text class="flow-edge-label( other)?"><title>[^<]*</title>(.*?)</text>', svg, re.S):
        text = "".join(re.findall(r"<tspan[^>]*>([^<]*)</tspan>", spans))
        labels["other" if css else "branch"].append(html_module.unescape(text))
    return labels


def step_row(page_html: str, kind: str) -> str:
    rows = re.findall(rf'<tr class="procedure-step kind-{kind}[^"]*">.*?</tr>', page_html, re.S)
    assert len(rows) == 1, rows
    return rows[0]


# --------------------------------------------------------------------------
# The journey
# --------------------------------------------------------------------------


def test_staff_builds_a_branching_procedure_tries_it_publishes_it_and_sees_the_test_application(admin_client):
    client = admin_client
    today = timezone.localdate()
    year = timezone.localtime().year

    # 1. The department and the procedure, through the admin's add forms.
    department_page = client.get(reverse("admin:staff_department_add"))
    data = form_data(department_page)
    data.update(name="生活環境課", code="seikatsu")
    assert client.post(reverse("admin:staff_department_add"), data).status_code == 302
    department = Department.objects.get(code="seikatsu")

    add_page = client.get(reverse("admin:procedures_procedure_add"))
    assert add_page.status_code == 200
    data = form_data(add_page)
    data.update(
        name="犬の登録申請",
        description="飼い犬の登録と死亡の届出",
        keywords="犬の登録",
        receipt_prefix="inu",
        department=str(department.pk),
    )
    response = client.post(reverse("admin:procedures_procedure_add"), data)
    procedure = Procedure.objects.get(name="犬の登録申請")
    assert procedure.receipt_prefix == "INU" and procedure.keyword_list == ["犬の登録"]
    assert procedure.department == department and not procedure.is_open
    draft = procedure.draft
    assert draft is not None and draft.number == 1 and not draft.steps.exists()
    assert response.status_code == 302 and response.url == version_url(draft.pk)
    assert any("犬の登録申請" in message and "作成しました" in message for message in messages_of(response))

    # 2. The steps, each through 「ステップを追加」 on the draft page.
    notice = add_step(
        client,
        draft.pk,
        "選択（1つ）",
        {"key": "notice_type", "label": "届出の種類"},
        choices=[("new", "新規登録"), ("death", "死亡届")],
    )
    death_date = add_step(
        client,
        draft.pk,
        "日付",
        {
            "key": "death_date",
            "label": "死亡した日",
            "min_days": "-30",
            "max_days": "0",
            "weekdays": [str(day) for day in range(7)],
            "condition_combine": "all",
            "rule1_step": "notice_type",
            "rule1_op": "equals",
            "rule1_value": "死亡届",
        },
        offered=["notice_type"],
    )
    add_step(client, draft.pk, "短い文章", {"key": "dog_name", "label": "犬の名前"})
    phone = add_step(
        client, draft.pk, "短い文章", {"key": "phone", "label": "電話番号", "format": "phone", "sensitive": "on"}
    )
    add_step(client, draft.pk, "確認", {"key": "confirm", "label": "入力内容を確認してください。"})
    add_step(client, draft.pk, "完了（受付番号）", {"key": "done", "label": "受け付けました。"})

    steps = list(draft.steps.order_by("position", "id"))
    assert [(s.key, s.kind, s.position) for s in steps] == [
        ("notice_type", "single_choice", 10),
        ("death_date", "date", 20),
        ("dog_name", "short_text", 30),
        ("phone", "short_text", 40),
        ("confirm", "confirmation", 50),
        ("done", "completion", 60),
    ]
    assert isinstance(notice, SingleChoiceStep)
    assert list(notice.choices.values_list("value", "label")) == [("new", "新規登録"), ("death", "死亡届")]
    assert isinstance(death_date, DateStep) and (death_date.min_days, death_date.max_days) == (-30, 0)
    # The builder turned the choice's label into its stored value.
    assert death_date.condition == {"step": "notice_type", "op": "equals", "value": "death"}
    assert isinstance(phone, ShortTextStep) and phone.format == "phone" and phone.sensitive
    assert all(step.condition is None for step in steps if step.key != "death_date")

    # 3. The condition in words on the draft page, the branch in the flow picture.
    page = client.get(version_url(draft.pk)).content.decode()
    assert "届出の種類 が 死亡届 のとき" in step_row(page, "date")
    assert "conditional" not in step_row(page, "single_choice")
    phone_row = next(
        row
        for row in re.findall(r'<tr class="procedure-step kind-short_text[^"]*">.*?</tr>', page, re.S)
        if "<code>phone</code>" in row
    )
    assert "procedure-sensitive" in phone_row
    assert "問題は見つかりませんでした" in page
    flow_link = reverse("admin:procedures_procedureversion_flow", args=[draft.pk])
    assert flow_link in page
    flow_page = client.get(flow_link)
    assert flow_page.status_code == 200
    svg = svg_of(flow_page.content.decode())
    # The branch connector says when it is taken; the way past it says それ以外.
    assert connector_labels(svg) == {"branch": ["届出の種類 が 死亡届 のとき"], "other": ["それ以外"]}
    assert "死亡した日" in svg and "犬の名前" in svg

    # 4. Try the draft in the simulator before publishing.
    chat, config = open_simulator(client, procedure.pk)
    assert (config["procedure"], config["version"]) == (procedure.pk, draft.pk)  # the draft is what is tried
    chat.start()
    question = chat.question()
    assert "届出の種類" in question["text"]
    assert [a["label"] for a in question["actions"]][:2] == ["新規登録", "死亡届"]
    chat.tap("死亡届")

    question = chat.question()
    assert "死亡した日" in question["text"]
    picker = next(a for a in question["actions"] if a["kind"] == "date_picker")
    assert picker["options"]["min"] == (today - dt.timedelta(days=30)).isoformat()
    assert picker["options"]["max"] == today.isoformat()
    assert picker["event"]["type"] == "date" and picker["event"]["step"] == "death_date"
    tomorrow = {**picker["event"], "value": (today + dt.timedelta(days=1)).isoformat()}
    chat.send(tomorrow)  # after 死亡した日's max: asked again
    assert [m["code"] for m in chat.last["messages"]] == ["error.date_not_allowed", "question"]
    assert "死亡した日" in chat.question()["text"]
    assert not any(m["layout"] == "summary" for m in chat.last["messages"])
    died_on = (today - dt.timedelta(days=3)).isoformat()
    chat.send({**picker["event"], "value": died_on})

    assert "犬の名前" in chat.question()["text"]
    chat.say("ポチ")
    assert "電話番号" in chat.question()["text"]
    chat.say("090-12")  # not a phone number: asked again
    assert [m["code"] for m in chat.last["messages"]] == ["error.bad_format", "question"]
    assert "電話番号" in chat.question()["text"]
    chat.say(PHONE)

    summary = chat.summary()
    assert PHONE not in chat.raw and "1234" not in chat.raw  # never shown back, not even in the JSON
    rows = {row["key"]: row for row in summary["rows"]}
    assert list(rows) == ["notice_type", "death_date", "dog_name", "phone"]
    assert rows["notice_type"]["value"] == "死亡届" and rows["notice_type"]["masked"] is False
    assert rows["dog_name"]["value"] == "ポチ" and rows["dog_name"]["masked"] is False
    died = today - dt.timedelta(days=3)
    assert rows["death_date"]["value"].startswith(f"{died.year}年{died.month}月{died.day}日")
    assert rows["death_date"]["masked"] is False
    assert rows["phone"]["masked"] is True and MASK[0] in rows["phone"]["value"]
    data = chat.tap("この内容で申し込む")

    application = Application.objects.get()
    assert application.is_test is True
    assert application.receipt_number == f"TEST-INU-{year}-000001"
    assert application.version_id == draft.pk and application.procedure_id == procedure.pk
    assert application.answers == {"notice_type": "death", "death_date": died_on, "dog_name": "ポチ", "phone": PHONE}
    assert [a["receipt_number"] for a in data["applications"]] == [application.receipt_number]
    assert data["applications"][0]["is_test"] is True
    assert any(application.receipt_number in m["text"] for m in data["messages"])
    draft.refresh_from_db()
    procedure.refresh_from_db()
    assert draft.is_draft and not procedure.is_open  # trying it published nothing

    # 5. Publish with the button of the draft page.
    page = client.get(version_url(draft.pk)).content.decode()
    publish_url = reverse("admin:procedures_procedureversion_publish", args=[draft.pk])
    assert f'action="{publish_url}"' in page and "公開する</button>" in page
    response = client.post(publish_url)
    assert response.status_code == 302
    assert response.url == reverse("admin:procedures_procedure_change", args=[procedure.pk])
    assert any("第1版を公開しました" in message for message in messages_of(response))
    procedure.refresh_from_db()
    version = ProcedureVersion.objects.get(pk=draft.pk)
    assert procedure.is_open and procedure.current_version == version and procedure.draft is None
    assert version.status == ProcedureVersion.Status.PUBLISHED and version.spec is not None
    assert [s["key"] for s in version.spec["steps"]] == [
        "notice_type",
        "death_date",
        "dog_name",
        "phone",
        "confirm",
        "done",
    ]
    procedure_page = client.get(response.url).content.decode()
    assert "公開中" in procedure_page

    page = client.get(version_url(version.pk)).content.decode()
    assert "<strong>公開中</strong>" in page
    assert "ステップを追加" not in page and "公開する</button>" not in page and 'name="_save"' not in page
    assert "届出の種類 が 死亡届 のとき" in step_row(page, "date")  # still in words, from the frozen spec
    flow_page = client.get(reverse("admin:procedures_procedureversion_flow", args=[version.pk]))
    assert connector_labels(svg_of(flow_page.content.decode()))["branch"] == ["届出の種類 が 死亡届 のとき"]
    dog_name = Step.objects.get(version=version, key="dog_name")
    step_url = reverse("admin:procedures_step_change", args=[dog_name.pk])
    step_page = client.get(step_url)
    assert step_page.status_code == 200 and 'name="_save"' not in step_page.content.decode()
    refused = client.post(step_url, {"key": "dog_name", "label": "変えた名前", "position": "30"})
    assert refused.status_code == 403
    assert Step.objects.get(pk=dog_name.pk).label == "犬の名前"

    # 6. The application list leaves the test application out unless the filter says otherwise.
    list_url = reverse("admin:procedures_application_changelist")
    listing = client.get(list_url).content.decode()
    assert application.receipt_number not in listing
    show = re.search(r'<a href="(\?[^"]*tests=show[^"]*)"[^>]*>\s*テスト申請を表示', listing)
    assert show, "the テスト申請 filter is not offered"
    listing = client.get(list_url + html_module.unescape(show.group(1))).content.decode()
    link = re.search(rf'<a href="([^"]+)">{re.escape(application.receipt_number)}</a>', listing)
    assert link, "the test application is not listed with テスト申請を表示"
    detail = client.get(html_module.unescape(link.group(1)))
    assert detail.status_code == 200
    detail_html = detail.content.decode()
    assert PHONE not in detail_html and "1234" not in detail_html
    assert f"<tr><th>電話番号</th><td>{MASK}</td></tr>" in detail_html
    assert "<tr><th>届出の種類</th><td>死亡届</td></tr>" in detail_html
    assert "<tr><th>犬の名前</th><td>ポチ</td></tr>" in detail_html
    # Dates read as in the resident's summary: 2026年11月21日（土）.
    assert f"<tr><th>死亡した日</th><td>{format_date(died_on)}</td></tr>" in detail_html

    # 7. The published version, started with its keyword: 新規登録 skips 死亡した日.
    chat, config = open_simulator(client, procedure.pk)
    assert (config["procedure"], config["version"]) == (procedure.pk, version.pk)
    assert chat.post("reset", {})["ok"] is True
    chat.say("犬の登録")
    assert "届出の種類" in chat.question()["text"]
    chat.tap("新規登録")
    assert "犬の名前" in chat.question()["text"]
    assert not any(a["kind"] == "date_picker" for a in chat.actions())
    chat.say("ハチ")
    chat.say("03-1234-5678")
    rows = {row["key"]: row for row in chat.summary()["rows"]}
    assert list(rows) == ["notice_type", "dog_name", "phone"]
    assert rows["notice_type"]["value"] == "新規登録" and rows["phone"]["masked"] is True
    data = chat.tap("この内容で申し込む")
    second = Application.objects.get(receipt_number=f"TEST-INU-{year}-000002")
    assert data["applications"][0]["receipt_number"] == second.receipt_number
    assert second.is_test and second.version_id == version.pk
    assert second.answers == {"notice_type": "new", "dog_name": "ハチ", "phone": "03-1234-5678"}
    assert not Application.objects.filter(is_test=False).exists()


def test_new_date_step_form_starts_with_every_weekday_accepted(admin_client):
    draft = ProcedureVersionFactory()
    add_page = admin_client.get(version_url(draft.pk)).content.decode()
    action, kinds = add_step_kinds(add_page)
    add_url = f"{action}?version={draft.pk}&ct_id={kinds['日付']}"
    form_page = admin_client.get(add_url)
    boxes = re.findall(r'<input type="checkbox" name="weekdays"[^>]*>', form_page.content.decode())
    assert len(boxes) == 7
    assert all("checked" in box for box in boxes), boxes
    data = form_data(form_page)
    data.update(key="pickup_date", label="収集日")
    response = admin_client.post(add_url, data)
    assert response.status_code == 302
    assert DateStep.objects.get(version=draft, key="pickup_date").weekdays == list(range(7))
