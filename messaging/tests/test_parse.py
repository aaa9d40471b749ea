"""LINE webhook events -> engine Events, follow/unfollow, or ignored with a reason; postback signing."""

from __future__ import annotations

import pytest

from messaging.line import parse, postback
from messaging.tests.test_webhook import (
    USER,
    callback,
    event,
    fixture_body,
    follow_event,
    image_event,
    location_event,
    postback_event,
    text_event,
    unfollow_event,
)
from procedures.engine.types import Event


def first_event(name: str) -> dict:
    return fixture_body(name)["events"][0]


def test_text_message_becomes_a_text_event():
    parsed = parse.parse_event(first_event("text_message"))
    assert parsed.action == parse.ENGINE
    assert parsed.event == Event(type="text", text="粗大ごみの申し込み")
    assert parsed.reply_token == "nHuyWiB7yP5Zw52FIkcQobQuGDXCTA"


def test_location_and_sticker_become_engine_events():
    location = parse.parse_event(first_event("location_message"))
    assert location.event == Event(
        type="location",
        data={
            "latitude": 35.681236,
            "longitude": 139.767125,
            "address": "東京都千代田区丸の内1-1-1",
            "title": "市役所",
        },
    )
    assert parse.parse_event(first_event("sticker_message")).event == Event(type="sticker")
    odd = parse.parse_event(location_event(USER, latitude=135.0, longitude=10.0))
    assert odd.event.data["latitude"] is None  # out of range: the engine asks again


def test_image_message_needs_its_content_first():
    parsed = parse.parse_event(first_event("image_message"))
    assert parsed.action == parse.CONTENT
    assert parsed.message_id == "354718705033693859"
    external = image_event(USER, "42")
    external["message"]["contentProvider"] = {"type": "external", "originalContentUrl": "https://example.com/a.jpg"}
    parsed = parse.parse_event(external)
    assert parsed.action == parse.ENGINE and parsed.event.data["content_type"] == "application/octet-stream"


def test_files_and_videos_become_image_events_with_their_real_type():
    file_message = event(
        "message",
        USER,
        reply_token="r",
        message={"id": "77", "type": "file", "fileName": "申請書.pdf", "fileSize": 2048},
    )
    parsed = parse.parse_event(file_message)
    assert parsed.action == parse.CONTENT
    assert (parsed.declared_type, parsed.declared_size) == ("application/pdf", 2048)
    video = event("message", USER, reply_token="r", message={"id": "78", "type": "video", "duration": 1000})
    parsed = parse.parse_event(video)
    assert parsed.event.type == "image" and parsed.event.data["content_type"] == "video/mp4"


def test_follow_and_unfollow():
    follow = parse.parse_event(first_event("follow"))
    assert (follow.action, follow.reply_token, follow.is_unblocked) == (
        parse.FOLLOW,
        "b60d432864f44d079f6d8efe86cf404b",
        False,
    )
    assert parse.parse_event(follow_event(USER, unblocked=True)).is_unblocked is True
    assert parse.parse_event(first_event("unfollow")).action == parse.UNFOLLOW


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (first_event("group_text_message"), "not a one-to-one chat (source: group)"),
        (first_event("unknown_event"), "unsupported event type: futureEventFromLine"),
        ({**text_event(USER, "standby"), "mode": "standby"}, "standby mode (another channel has the chat)"),
        (event("unsend", USER, unsend={"messageId": "1"}), "unsupported event type: unsend"),
        (event("message", USER, message={"id": "1", "type": "hologram"}), "unsupported message type: hologram"),
        ("not an event", "not an event object"),
    ],
)
def test_group_room_standby_and_unknown_events_are_ignored_with_reason(payload, reason):
    parsed = parse.parse_event(payload)
    assert parsed.action == parse.IGNORE
    assert parsed.reason == reason


def test_signed_postback_round_trips_and_carries_the_picked_date():
    choice = Event(type="choice", value="tansu", step="items", session="12-34-1767225600000")
    assert postback.decode(postback.encode(choice)) == choice
    command = Event(type="command", name="page", value=2, step="items", session="s")
    assert postback.decode(postback.encode(command)) == command
    start = Event(type="start", value=7)
    assert postback.decode(postback.encode(start)) == start
    date = Event(type="date", step="pickup_date", session="s")
    picked = parse.parse_event(postback_event(USER, postback.encode(date), {"date": "2026-02-03"}))
    assert picked.event == Event(type="date", value="2026-02-03", step="pickup_date", session="s")
    from_datetime = parse.parse_event(postback_event(USER, postback.encode(date), {"datetime": "2026-02-03T10:00"}))
    assert from_datetime.event.value == "2026-02-03"


def test_postback_data_fits_in_300_characters_or_is_refused_loudly():
    longest = Event(type="choice", value="値" * 40, step="k" * 40, session="9" * 100, text="t" * 60)
    assert len(postback.encode(longest)) <= postback.MAX_DATA_LENGTH
    with pytest.raises(postback.PostbackTooLong):
        postback.encode(Event(type="choice", value="v" * 200, step="k" * 40, session="9" * 100))
    with pytest.raises(ValueError):
        postback.encode(Event(type="text", text="typed"))


def test_forged_or_tampered_postbacks_are_refused(settings):
    genuine = postback.encode(Event(type="choice", value="yes", step="in_city", session="s"))
    tampered = genuine.replace('"yes"', '"no"')
    forged = first_event("postback_datetime")  # action=pick_date&procedure=bulky_waste, not signed by us
    for data in (tampered, '1.AAAAAAAAAAAAAAAAAAAAAA.["c","yes","in_city","","s"]', "", None):
        with pytest.raises(postback.InvalidPostback):
            postback.decode(data)
    assert parse.parse_event(forged).reason == "postback refused: not signed by this channel"
    # Refused as a command, yet answered: the engine gets a button it does not know, with none of the data.
    refused = parse.parse_event(forged)
    assert (refused.action, refused.event) == (parse.ENGINE, parse.UNSIGNED_POSTBACK)
    assert refused.reply_token == forged["replyToken"]
    # Signed with another key: refused; with a key being rotated out: still accepted.
    settings.SECRET_KEY = "a-new-secret-key-for-the-city-" + "x" * 30
    with pytest.raises(postback.InvalidPostback):
        postback.decode(genuine)
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "yet-another-key-" + "y" * 40
    fresh = postback.encode(Event(type="choice", value="yes", step="in_city", session="s"))
    assert postback.decode(fresh).value == "yes"


def test_callback_problems_accept_real_bodies_and_name_what_is_wrong():
    assert parse.callback_problems(fixture_body("unknown_event")) == []
    assert parse.callback_problems(callback(text_event(USER, "a"), unfollow_event(USER))) == []
    assert parse.callback_problems({"destination": "U1"}) == ["events is not a list"]
    broken = callback(text_event(USER, "a"))
    broken["events"][0]["message"] = "text"
    broken["events"][0]["webhookEventId"] = "x" * 65
    assert parse.callback_problems(broken) == [
        "events[0].webhookEventId is missing or too long",
        "events[0].message is malformed",
    ]


def test_redaction_keeps_ids_and_types_but_no_resident_input():
    original = text_event(USER, "小城 太郎")
    redacted = parse.redact(original)
    assert "小城" not in str(redacted)
    assert redacted["message"] == {"id": original["message"]["id"], "type": "text"}
    assert redacted["webhookEventId"] == original["webhookEventId"] and redacted["redacted"] is True
    located = parse.redact(location_event(USER, latitude=33.2, longitude=130.1, address="小城市三日月町"))
    assert "三日月" not in str(located) and "33.2" not in str(located)
    picked = parse.redact(postback_event(USER, "secret-data", {"date": "2026-02-03"}))
    assert picked["postback"] == {}


def test_an_unsigned_postback_carries_nothing_of_its_data_to_the_engine():
    forged = '1.AAAAAAAAAAAAAAAAAAAAAA.["c","yes","in_city","","s"]'
    for data in (forged, "action=menu", ""):
        parsed = parse.parse_event(postback_event(USER, data, {"date": "2026-02-03"}))
        assert parsed.action == parse.ENGINE
        assert parsed.event == Event(type="command", name="unsigned_postback")


def test_body_problems_are_the_envelope_and_event_problems_each_event():
    assert parse.body_problems(callback(text_event(USER, "a"))) == []
    assert parse.body_problems({"events": []}) == ["destination is missing"]
    assert parse.body_problems([]) == ["the body is not a JSON object"]
    absurd = text_event(USER, "a")
    absurd["timestamp"] = 10**17
    assert parse.body_problems(callback(absurd)) == []  # one event's problem is not the body's
    assert parse.event_problems(3, absurd) == ["events[3].timestamp is not a time in milliseconds"]
    assert parse.event_problems(0, "x") == ["events[0] is not an object"]
    latest = text_event(USER, "a", timestamp=parse.MAX_TIMESTAMP_MS)
    assert parse.event_problems(0, latest) == [] and parse.inbox_fields(latest)["line_timestamp"].year == 9999


def test_a_malformed_event_keeps_its_ids_but_nothing_the_resident_sent():
    broken = text_event(USER, "小城市三日月町")
    broken["timestamp"] = -1
    broken["source"]["userId"] = "U" * 65
    problems = parse.event_problems(0, broken)
    received = parse.line_time(1_767_225_600_000)
    fields = parse.malformed_fields(broken, problems, received)
    assert fields["webhook_event_id"] == broken["webhookEventId"] and fields["line_timestamp"] == received
    assert fields["line_user_id"] == ""  # too long for the column: not kept
    assert fields["ignored_reason"].startswith("malformed event: events[0].timestamp")
    assert "三日月" not in str(fields) and fields["payload"]["redacted"] is True
    assert parse.malformed_fields({"type": "message"}, ["x"], received) is None  # no id to store it by
