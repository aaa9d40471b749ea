"""Campaigns: checking a campaign, importing the CSV of eligible people, matching them to residents."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from audit import actions as audit_actions
from audit.models import AuditEntry
from broadcasts import campaigns
from broadcasts.models import Campaign, CampaignRecipient
from broadcasts.tests.campaign_world import (  # noqa: F401 (fixtures)
    attribute_fixture,
    campaign_fixture,
    csv_bytes,
    department_fixture,
    eligible_resident,
    procedure_fixture,
    staff_fixture,
)
from messaging.tests.test_webhook import user_id
from residents.models import Attribute, Resident, ResidentAttributeValue

pytestmark = pytest.mark.django_db


def import_csv(campaign, staff, raw: bytes) -> campaigns.ImportResult:
    return campaigns.recipients_import(campaign=campaign, raw=raw, actor=staff)


def refusal(campaign, staff, raw: bytes) -> list[str]:
    with pytest.raises(campaigns.CampaignRefused) as refused:
        import_csv(campaign, staff, raw)
    return refused.value.messages


def test_import_matches_rows_by_attribute_keeps_unmatched_rows_and_stores_only_the_key(campaign, staff, attribute):
    first = eligible_resident(1, "A001", attribute)
    second = eligible_resident(2, "A002", attribute)
    result = import_csv(
        campaign,
        staff,
        csv_bytes(
            "対象者番号,氏名,住所", "A001,佐賀太郎,本町1-1", "Ａ００２,佐賀花子,本町2-2", "Z999,未登録次郎,本町3-3"
        ),
    )
    assert (result.rows, result.matched) == (3, 2)
    rows = list(CampaignRecipient.objects.filter(campaign=campaign).order_by("row_number"))
    assert [(row.row_number, row.match_value, row.resident) for row in rows] == [
        (2, "A001", first),
        (3, "A002", second),
        (4, "Z999", None),
    ]  # full-width digits normalised
    stored = str(list(CampaignRecipient.objects.values()))
    assert "佐賀" not in stored and "本町" not in stored
    entry = AuditEntry.objects.get(action=audit_actions.CAMPAIGN_IMPORT)
    assert entry.details == {"rows": 3, "matched": 2} and "A001" not in str(entry.details)


def test_broken_rows_are_reported_with_line_numbers_and_nothing_is_imported(campaign, staff, attribute):
    import_csv(campaign, staff, csv_bytes("対象者番号", "KEEP1"))
    messages = refusal(
        campaign,
        staff,
        csv_bytes("対象者番号,氏名", "A001,一郎", ",空欄", "A001,重複", "A003", "A004,四郎,余分", '"A005,閉じ忘れ'),
    )
    text = "\n".join(messages)
    assert messages[0] == "5 行に問題があるため、何も取り込んでいません。"
    assert "3 行目：照合列が空です。" in text
    assert "4 行目：照合列の値が 2 行目と重複しています。" in text
    assert "5 行目：列の数が見出しと違います（見出し 2 列、この行 1 列）。" in text
    assert "6 行目：列の数が見出しと違います（見出し 2 列、この行 3 列）。" in text
    assert '7 行目：CSV として読めません（引用符 " の閉じ忘れなど）。' in text
    # The earlier import is untouched: one transaction, all or nothing.
    assert list(CampaignRecipient.objects.values_list("match_value", flat=True)) == ["KEEP1"]


def test_unclosed_quote_is_reported_with_its_line(campaign, staff):
    messages = refusal(campaign, staff, csv_bytes("対象者番号,氏名", "A001,一郎", '"A002,二郎'))
    assert any("行目：CSV として読めません" in message for message in messages)
    assert CampaignRecipient.objects.count() == 0


def test_missing_key_column_names_the_headers_found(campaign, staff):
    messages = refusal(campaign, staff, csv_bytes("番号,氏名", "A001,一郎"))
    assert messages == ["1 行目（見出し）に照合列「対象者番号」がありません。見出し：「番号」、「氏名」"]


@pytest.mark.parametrize("encoding", ["cp932", "utf-8-sig", "utf-8"])
def test_cp932_and_utf8_with_or_without_bom_are_read(campaign, staff, attribute, encoding):
    resident = (
        eligible_resident(1, "髙橋-001", attribute)
        if encoding != "cp932"
        else eligible_resident(1, "高橋-001", attribute)
    )
    key = resident.attribute_values.get().value_text
    result = import_csv(campaign, staff, csv_bytes("対象者番号,氏名", f"{key},高橋一郎", encoding=encoding))
    assert (result.rows, result.matched) == (1, 1)


def test_a_file_in_another_encoding_is_refused_clearly(campaign, staff):
    messages = refusal(campaign, staff, "対象者番号\nA001\n".encode("utf-16"))
    assert messages == ["文字コードを読み取れません。UTF-8 か Shift_JIS（CP932）の CSV で保存してください。"]


def test_an_oversized_csv_is_refused_with_a_clear_message_and_nothing_is_read(campaign, staff, monkeypatch):
    monkeypatch.setattr(campaigns, "CSV_MAX_BYTES", 64)
    messages = refusal(campaign, staff, csv_bytes("対象者番号", *[f"A{n:04d}" for n in range(20)]))
    assert messages == ["ファイルが大きすぎます。上限は 64 バイトです。ファイルを分けてください。"]
    assert CampaignRecipient.objects.count() == 0


def test_an_oversized_upload_on_the_import_page_shows_the_error(campaign, staff, client, monkeypatch):
    monkeypatch.setattr(campaigns, "CSV_MAX_BYTES", 64)
    client.force_login(staff)
    url = reverse("admin:broadcasts_campaign_import", args=[campaign.pk])
    assert client.get(url).status_code == 200
    upload = csv_bytes("対象者番号", *[f"A{n:04d}" for n in range(20)])
    response = client.post(url, {"file": SimpleUploadedFile("eligible.csv", upload, "text/csv")})
    assert response.status_code == 200
    assert "ファイルが大きすぎます。上限は 64 バイトです。" in response.content.decode()
    assert CampaignRecipient.objects.count() == 0


def test_matching_by_line_user_id(campaign, staff):
    resident = Resident.objects.create(line_user_id=user_id(5))
    campaign.match_by, campaign.match_attribute = Campaign.MatchBy.LINE_USER_ID, None
    campaign.save()
    result = import_csv(campaign, staff, csv_bytes("LINE ユーザーID", user_id(5), user_id(6)))
    assert (result.rows, result.matched) == (2, 1)
    assert CampaignRecipient.objects.get(match_value=user_id(5)).resident == resident
    messages = refusal(campaign, staff, csv_bytes("LINE ユーザーID", "not-a-line-id"))
    assert "2 行目：LINE ユーザーIDの形式ではありません（U と 32 文字の英数字）。" in messages


def test_matching_by_a_number_attribute_ignores_leading_zeros_and_a_key_of_two_residents(campaign, staff):
    number = Attribute.objects.create(key="household", label="世帯番号", kind=Attribute.Kind.NUMBER)
    one, two, three = (Resident.objects.create(line_user_id=user_id(n)) for n in (1, 2, 3))
    ResidentAttributeValue.objects.create(resident=one, attribute=number, value_number=Decimal("123"))
    ResidentAttributeValue.objects.create(resident=two, attribute=number, value_number=Decimal("77"))
    ResidentAttributeValue.objects.create(resident=three, attribute=number, value_number=Decimal("77"))
    campaign.match_attribute = number
    campaign.save()
    result = import_csv(campaign, staff, csv_bytes("対象者番号", "00123", "77"))
    assert result.matched == 1  # 77 names two residents: never guessed
    assert CampaignRecipient.objects.get(match_value="123").resident == one
    assert "2 行目：数値ではありません。" in refusal(campaign, staff, csv_bytes("対象者番号", "12a"))


def test_an_import_after_sending_started_is_refused(campaign, staff):
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.OPEN)
    assert refusal(campaign, staff, csv_bytes("対象者番号", "A001")) == [
        "送信を始めたキャンペーンの対象者は取り込み直せません。"
    ]


def test_question_with_a_placeholder_and_wrong_fixed_answers_are_refused(campaign):
    campaign.question = "{氏名} 様、給付金の対象です。"
    campaign.fixed_answers = {"agree": "たぶん", "unknown": 1}
    with pytest.raises(ValidationError) as refused:
        campaign.full_clean()
    errors = refused.value.message_dict
    assert "差し込み" in errors["question"][0]
    text = "\n".join(errors["procedure"])
    assert "「unknown」は、この手続きの公開中のバージョンにある入力ステップのキーではありません。" in text
    assert "「給付金の支給要件に同意しますか？」（agree）" in text


def test_fixed_answers_must_cover_the_required_steps(campaign):
    campaign.fixed_answers = {"agree": True}
    with pytest.raises(ValidationError) as refused:
        campaign.full_clean()
    assert refused.value.message_dict["procedure"] == ["必須のステップ「受取方法」（method）の回答がありません。"]


def test_matching_costs_the_same_statements_for_ten_rows_or_a_hundred(
    campaign, staff, attribute, django_assert_max_num_queries
):
    for number in range(100):
        eligible_resident(number, f"E{number:04d}", attribute)
    rows = [f"E{number:04d}" for number in range(100)]
    CampaignRecipient.objects.bulk_create(
        CampaignRecipient(campaign=campaign, row_number=index + 2, match_value=key) for index, key in enumerate(rows)
    )
    with django_assert_max_num_queries(6):
        assert campaigns.recipients_match(campaign=campaign) == 100
