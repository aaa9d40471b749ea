"""A small control API for a fake LINE running outside pytest (``manage.py fakeline``, the demo).

Served on the API port (host "A") under ``/_fake/`` – a prefix no LINE operation uses – with no
authentication: the fake listens on 127.0.0.1 only. Control requests are not LINE calls: they are
neither validated against LINE's specs nor recorded in ``calls()``.

    GET  /_fake/health                      {"status": "ok", "instance", "calls", "invalidCalls", "latestSeq"}
    POST /_fake/reply-tokens                {"userId", "ttl"?} -> {"replyToken", "expiresIn"}
    POST /_fake/users                       {"userId", "displayName"?, "follower"?: true, ...} -> the profile
    POST /_fake/contents                    raw bytes + Content-Type -> {"messageId", "size"} (id made here)
    PUT  /_fake/contents/{messageId}        raw bytes + Content-Type -> {"messageId", "size"}
    GET  /_fake/messages?userId=U..&after=N&limit=M
                                            {"messages": [{"seq", "operation", "via", "sentAt", "message"}],
                                             "next": N, "latestSeq", "instance"}

Every message the fake accepted for delivery (reply, push, multicast, broadcast to the followers) gets
a sequence number that only grows while the process runs, so a client polls with the last ``seq`` it
saw. ``instance`` changes when the fake restarts (and its numbers start again); ``reset()`` empties the log
as it empties ``calls()``, but the numbers go on.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from collections import deque
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .state import REPLY_TOKEN_TTL_SECONDS, FakeLineState

PREFIX = "/_fake/"
#: How many delivered messages the control log keeps (the oldest are dropped first).
LOG_MAX_MESSAGES = 20_000
CONTENT_MAX_BYTES = 50 * 1024 * 1024
JSON_MAX_BYTES = 64 * 1024
MESSAGES_LIMIT_MAX = 500
REPLY_TOKEN_TTL_MAX = 3600.0
_USER_ID = re.compile(r"^U[0-9a-f]{32}$")
_MESSAGE_ID = re.compile(r"^[0-9A-Za-z_-]{1,64}$")
_CONTENT_TYPE = re.compile(r"^[a-z0-9][a-z0-9.+-]{0,62}/[a-z0-9][a-z0-9.+-]{0,62}$")
_PROFILE_TEXT_MAX = {"displayName": 100, "statusMessage": 500, "pictureUrl": 1000, "language": 20}
_DELIVERING = {"replyMessage": "reply", "pushMessage": "push", "multicast": "multicast", "broadcast": "broadcast"}


class ControlError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class FakeLineControl:
    """The control API over one fake's state. ``handle`` answers ``(status, JSON body)``."""

    def __init__(self, state: FakeLineState, *, log_max: int = LOG_MAX_MESSAGES):
        self.state = state
        self.instance = secrets.token_hex(8)
        self._lock = threading.Lock()
        self._log: deque[tuple[int, str, float, frozenset[str], dict[str, Any]]] = deque(maxlen=log_max)
        self._seq = 0
        self._scanned = 0  # how many of state.calls are in the log
        self._calls: list | None = None  # the list scanned; state.reset() makes a new one

    # -- the message log --------------------------------------------------------------------------------------

    def _catch_up(self) -> None:
        """Append the messages of calls recorded since the last look (calls are append-only)."""
        with self.state.lock:
            calls = self.state.calls
            if calls is not self._calls or len(calls) < self._scanned:
                # reset() forgets the calls, so the log forgets their messages too; the numbering goes on.
                self._calls, self._scanned = calls, 0
                self._log.clear()
            new = calls[self._scanned :]
            self._scanned = len(calls)
        for call in new:
            via = _DELIVERING.get(call.operation_id or "")
            if via is None or not call.accepted or not isinstance(call.body, dict):
                continue
            recipients = frozenset(call.recipients)
            for message in call.body.get("messages") or []:
                self._seq += 1
                self._log.append((self._seq, call.operation_id or "", call.timestamp, recipients, message))

    def latest_seq(self) -> int:
        with self._lock:
            self._catch_up()
            return self._seq

    def messages_for(self, user_id: str, after: int = 0, limit: int = MESSAGES_LIMIT_MAX) -> dict[str, Any]:
        with self._lock:
            self._catch_up()
            found = []
            for seq, operation, timestamp, recipients, message in self._log:
                if seq <= after or user_id not in recipients:
                    continue
                found.append(
                    {
                        "seq": seq,
                        "operation": operation,
                        "via": _DELIVERING[operation],
                        "sentAt": datetime.fromtimestamp(timestamp, tz=UTC).isoformat(timespec="milliseconds"),
                        "message": message,
                    }
                )
                if len(found) >= limit:
                    break
            return {
                "messages": found,
                "next": found[-1]["seq"] if found else max(after, 0),
                "latestSeq": self._seq,
                "instance": self.instance,
            }

    # -- HTTP -------------------------------------------------------------------------------------------------

    @staticmethod
    def handles(path: str) -> bool:
        return path == PREFIX.rstrip("/") or path.startswith(PREFIX)

    @staticmethod
    def body_limit(method: str, path: str) -> int:
        """The largest body a control request may carry (checked before reading it)."""
        return CONTENT_MAX_BYTES if path.startswith(PREFIX + "contents") else JSON_MAX_BYTES

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        split = urlsplit(target)
        path = split.path.rstrip("/")
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        try:
            return self._route(method, path, query, headers, body)
        except ControlError as error:
            return error.status, {"message": error.message}

    def _route(self, method, path, query, headers, body) -> tuple[int, dict[str, Any]]:
        base = PREFIX.rstrip("/")
        routes = {
            f"{base}/health": {"GET": lambda: self._health()},
            f"{base}/reply-tokens": {"POST": lambda: self._reply_token(_json(headers, body))},
            f"{base}/users": {"POST": lambda: self._user(_json(headers, body))},
            f"{base}/contents": {"POST": lambda: self._content(None, headers, body)},
            f"{base}/messages": {"GET": lambda: self._messages(query)},
        }
        if path.startswith(f"{base}/contents/"):
            message_id = path[len(f"{base}/contents/") :]
            routes[path] = {"PUT": lambda: self._content(message_id, headers, body)}
        methods = routes.get(path)
        if methods is None:
            raise ControlError(404, f"no control operation at {path}; see messaging/line/fakeline/control.py")
        if method not in methods:
            raise ControlError(405, f"{method} is not allowed for {path} (allowed: {', '.join(methods)})")
        return methods[method]()

    def _health(self) -> tuple[int, dict[str, Any]]:
        with self.state.lock:
            calls = list(self.state.calls)
        return 200, {
            "status": "ok",
            "instance": self.instance,
            "calls": len(calls),
            "invalidCalls": sum(1 for call in calls if call.invalid),
            "latestSeq": self.latest_seq(),
        }

    def _reply_token(self, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        user_id = _user_id(data.get("userId"))
        ttl = data.get("ttl", REPLY_TOKEN_TTL_SECONDS)
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl <= REPLY_TOKEN_TTL_MAX:
            raise ControlError(400, f"ttl must be a number of seconds in (0, {REPLY_TOKEN_TTL_MAX:g}]")
        token = self.state.issue_reply_token(user_id, float(ttl))
        return 200, {"replyToken": token, "userId": user_id, "expiresIn": ttl}

    def _user(self, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        user_id = _user_id(data.get("userId"))
        follower = data.get("follower", True)
        if not isinstance(follower, bool):
            raise ControlError(400, "follower must be true or false")
        profile: dict[str, Any] = {"userId": user_id, "displayName": "LINE User"}
        for key, limit in _PROFILE_TEXT_MAX.items():
            value = data.get(key)
            if value is None:
                continue
            if not isinstance(value, str) or not 0 < len(value) <= limit:
                raise ControlError(400, f"{key} must be a string of 1 to {limit} characters")
            profile[key] = value
        with self.state.lock:
            self.state.users[user_id] = profile
            followers = self.state.followers
            if follower and user_id not in followers:
                followers.append(user_id)
            elif not follower and user_id in followers:
                followers.remove(user_id)
        return 200, {**profile, "follower": follower}

    def _content(self, message_id: str | None, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        if message_id is None:
            message_id = self.state.next_message_id()
        elif not _MESSAGE_ID.match(message_id):
            raise ControlError(400, "messageId must be 1 to 64 letters, digits, '_' or '-'")
        content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower() or "application/octet-stream"
        if not _CONTENT_TYPE.match(content_type):
            raise ControlError(400, "Content-Type must be a media type such as image/jpeg")
        if not body:
            raise ControlError(400, "the body (the content's bytes) is empty")
        with self.state.lock:
            self.state.contents[message_id] = (bytes(body), content_type)
        return 201, {"messageId": message_id, "size": len(body), "contentType": content_type}

    def _messages(self, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        user_id = _user_id(query.get("userId"))
        after = _int(query.get("after", "0"), "after", 0)
        limit = min(_int(query.get("limit", str(MESSAGES_LIMIT_MAX)), "limit", 1), MESSAGES_LIMIT_MAX)
        return 200, self.messages_for(user_id, after, limit)


def _json(headers: dict[str, str], body: bytes) -> dict[str, Any]:
    if headers.get("content-type", "").split(";", 1)[0].strip().lower() != "application/json":
        raise ControlError(415, "send JSON (Content-Type: application/json)")
    try:
        data = json.loads(body.decode("utf-8") or "null")
    except (UnicodeDecodeError, ValueError):
        raise ControlError(400, "the body is not JSON") from None
    if not isinstance(data, dict):
        raise ControlError(400, "the body must be a JSON object")
    return data


def _user_id(value: Any) -> str:
    if not isinstance(value, str) or not _USER_ID.match(value):
        raise ControlError(400, "userId must be 'U' followed by 32 lower-case hex digits")
    return value


def _int(raw: str, name: str, minimum: int) -> int:
    if not raw.isdigit() or len(raw) > 18 or int(raw) < minimum:
        raise ControlError(400, f"{name} must be an integer >= {minimum}")
    return int(raw)
