"""What staff write to a resident by LINE must carry no personal data: the shared check."""

from __future__ import annotations

import pytest

from procedures.correspondence import my_number_in_text, personal_data_problems
from procedures.tests.factories import (
    ApplicationFactory,
    DateStepFactory,
    ProcedureVersionFactory,
    published_version,
    valid_draft,
)


@pytest.mark.parametrize(
    "text",
    ["番号は123456789018です", "1234 5678 9018", "1234-5678-9018", "１２３４－５６７８－９０１８", "987654321093"],
)
def test_a_my_number_is_recognised_with_or_without_separators(text):
    assert my_number_in_text(text)


@pytest.mark.parametrize(
    "text",
    [
        "123456789012",  # twelve digits, but the check digit does not hold
        "1234567890180",  # thirteen digits
        "受付番号 GOMI-2026-000123",
        "お問い合わせ 0952-37-6111",
        "",
    ],
)
def test_other_numbers_are_not_taken_for_a_my_number(text):
    assert not my_number_in_text(text)


@pytest.mark.django_db
def test_the_check_names_every_answer_repeated_from_any_of_the_applications_and_a_my_number():
    first = ApplicationFactory(answers={"name": "佐藤一郎"})
    second = ApplicationFactory(answers={"name": "佐藤花子", "count": 3})
    problems = personal_data_problems(
        applications=[first, second], text="佐藤 一郎様、佐藤花子様（123456789018）", what="メッセージ"
    )
    assert problems == [
        "メッセージに申請の回答（「お名前」）と同じ内容が含まれています。LINE で送る文には氏名・住所・"
        "電話番号などの個人情報を書けません。その部分を削除してください。",
        "メッセージにマイナンバー（個人番号）と思われる12桁の数字が含まれています。LINE では送れません。削除してください。",
    ]
    assert personal_data_problems(applications=[first, second], text="収集日は12月24日です", what="メッセージ") == []


@pytest.mark.django_db
@pytest.mark.parametrize("written", ["1980年5月1日", "1980/05/01", "1980-05-01", "１９８０年５月１日"])
def test_a_sensitive_date_such_as_a_birthday_is_recognised_as_staff_would_write_it(written):
    version = ProcedureVersionFactory()
    DateStepFactory(version=version, key="birthday", label="生年月日", sensitive=True)
    DateStepFactory(version=version, key="pickup", label="収集日")
    application = ApplicationFactory(
        version=published_version(valid_draft(version)), answers={"birthday": "1980-05-01", "pickup": "2026-12-24"}
    )
    assert personal_data_problems(applications=[application], text=f"{written}生まれの方", what="メッセージ")
    # A date that is not sensitive (the pick-up day) is what notices are about.
    assert (
        personal_data_problems(applications=[application], text="収集日は2026年12月24日です", what="メッセージ") == []
    )
