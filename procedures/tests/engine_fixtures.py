"""Helpers to build procedure specs, catalogs and conversations in tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from procedures.engine import Catalog, Event, Result, step
from procedures.spec import parse_spec

# A Tuesday, 10:00 in Tokyo.
NOW = datetime(2026, 6, 2, 1, 0, tzinfo=UTC)


def step_dict(key: str, kind: str, label: str | None = None, **fields) -> dict:
    data = {"key": key, "kind": kind, "label": label or key}
    data.update(fields)
    return data


def choices(*values: str, amounts: dict | None = None) -> list[dict]:
    """Choice dicts; a value "a" gets the label "A"."""
    amounts = amounts or {}
    return [{"value": v, "label": v.upper(), "amount": amounts.get(v, 0)} for v in values]


def confirmation(key: str = "confirm") -> dict:
    return step_dict(key, "confirmation", "以下の内容で申し込みますか？")


def completion(key: str = "done") -> dict:
    return step_dict(key, "completion", "受け付けました。", help_text="職員から連絡します。")


def spec_data(*steps: dict, name: str = "粗大ごみ収集", keywords=("粗大ごみ",), with_end: bool = True, **extra) -> dict:
    all_steps = list(steps)
    if with_end:
        all_steps += [confirmation(), completion()]
    data = {"name": name, "keywords": list(keywords), "steps": all_steps}
    data.update(extra)
    return data


def make_spec(*steps: dict, procedure_id: int = 1, version_id: int = 10, **kwargs):
    data = spec_data(*steps, **kwargs)
    data["procedure_id"] = procedure_id
    data["version_id"] = version_id
    return parse_spec(data)


def catalog_of(*specs, idle_timeout: timedelta = timedelta(hours=24)) -> Catalog:
    return Catalog(
        versions={spec.version_id: spec for spec in specs},
        current={spec.procedure_id: spec.version_id for spec in specs},
        idle_timeout=idle_timeout,
    )


def text(value: str) -> Event:
    return Event(type="text", text=value)


class Conversation:
    """Feeds events through `step`, keeping state and the clock, and remembers the last result."""

    def __init__(self, catalog: Catalog, now: datetime = NOW):
        self.catalog = catalog
        self.now = now
        self.state: dict | None = None
        self.result: Result | None = None
        self.results: list[Result] = []

    def send(self, event: Event, *, after: timedelta = timedelta(seconds=10)) -> Result:
        self.now = self.now + after
        self.result = step(self.catalog, self.state, event, self.now)
        self.state = self.result.state
        self.results.append(self.result)
        return self.result

    def say(self, value: str, **kwargs) -> Result:
        return self.send(text(value), **kwargs)

    @property
    def session(self) -> dict | None:
        return self.state["session"] if self.state else None

    @property
    def answers(self) -> dict:
        return self.session["answers"] if self.session else {}

    @property
    def codes(self) -> list[str]:
        return [message.code for message in self.result.messages]

    @property
    def last(self):
        return self.result.messages[-1]

    def action(self, code: str, *, label: str | None = None, message=None):
        """The first action with `code` (and label) in the last result's messages or summary rows."""
        messages = [message] if message is not None else list(self.result.messages)
        for msg in messages:
            candidates = list(msg.actions) + [row.edit for row in msg.rows if row.edit]
            for action in candidates:
                if action.code == code and (label is None or action.params.get("label") == label):
                    return action
        raise AssertionError(f"no action {code} {label or ''} in {[m.code for m in messages]}")

    def tap(self, code: str, *, label: str | None = None, value=None, **kwargs) -> Result:
        action = self.action(code, label=label)
        event = action.event
        if value is not None:  # a date picker or an image: the channel fills the value
            event = Event(**{**event.__dict__, "value": value})
        return self.send(event, **kwargs)

    def submits(self):
        return [effect for result in self.results for effect in result.effects]
