"""Thread-safe state of the fake LINE platform: recorded calls, injected behaviours and the small amount of
LINE-side data (users, reply tokens, retry keys, contents, rich menus, quota) the fake keeps."""

from __future__ import annotations

import itertools
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from messaging.line.openapi.validation import ErrorDetail

#: LINE recommends using a reply token within one minute of receiving the webhook.
REPLY_TOKEN_TTL_SECONDS = 60.0
#: Upper bound for ``delay_next`` so a mistaken test cannot hang the suite.
MAX_DELAY_SECONDS = 30.0

DEFAULT_ERROR_BODIES = {
    400: {"message": "Bad Request"},
    401: {"message": "Authentication failed. Confirm that the access token in the authorization header is valid."},
    403: {"message": "Access to this API is not available for your account"},
    404: {"message": "Not found"},
    409: {"message": "Conflict"},
    429: {"message": "Too Many Requests"},
    500: {"message": "Internal Server Error"},
    502: {"message": "Bad Gateway"},
    503: {"message": "Service Unavailable"},
    504: {"message": "Gateway Timeout"},
}


@dataclass
class Call:
    """One request the fake received, with the answer it gave."""

    method: str
    host: str  # "A" (api.line.me) or "D" (api-data.line.me)
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: Any  # parsed JSON; for multipart a dict name -> FormPart; None for binary/empty bodies
    raw_body: bytes
    content_type: str
    timestamp: float
    request_id: str
    operation_id: str | None = None
    path_params: dict[str, str] = field(default_factory=dict)
    status: int = 0
    response: Any = None  # parsed JSON answer (None for binary answers)
    response_headers: dict[str, str] = field(default_factory=dict)
    errors: list[ErrorDetail] = field(default_factory=list)
    invalid: bool = False  # the request itself broke the spec / LINE's documented rules
    injected: bool = False  # answered by fail_next / fail_all
    recipients: tuple[str, ...] = ()  # who received the messages of an accepted send

    @property
    def accepted(self) -> bool:
        return 200 <= self.status < 300

    @property
    def json(self) -> Any:
        return self.body

    @property
    def body_size(self) -> int:
        return len(self.raw_body)

    def describe(self) -> str:
        text = f"{self.method} {self.path} on {self.host} -> {self.status}"
        if self.errors:
            text += "".join(f"\n    - {e}" for e in self.errors)
        return text


@dataclass
class Injection:
    kind: str  # "fail" | "delay"
    remaining: int | None  # None: until cleared
    path_prefix: str | None
    status: int = 0
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def matches(self, path: str) -> bool:
        return self.path_prefix is None or path.startswith(self.path_prefix)


@dataclass
class ReplyToken:
    user_id: str
    expires_at: float  # time.monotonic()
    used: bool = False


@dataclass
class AcceptedRetry:
    request_id: str
    operation_id: str
    sent_messages: list[dict[str, str]]


class FakeLineState:
    """Everything the fake remembers. All access goes through ``lock`` (re-entrant)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._ids = itertools.count(600000000000000001)
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.calls: list[Call] = []
            self.invalid_expected = False
            self.injections: list[Injection] = []
            self.access_tokens: set[str] | None = None
            self.users: dict[str, dict[str, Any]] = {}
            self.followers: list[str] = []
            self.reply_tokens: dict[str, ReplyToken] = {}
            self.retry_keys: dict[str, AcceptedRetry] = {}
            self.contents: dict[str, tuple[bytes, str]] = {}
            self.rich_menus: dict[str, dict[str, Any]] = {}
            self.rich_menu_images: dict[str, tuple[bytes, str]] = {}
            self.aliases: dict[str, str] = {}
            self.default_rich_menu: str | None = None
            self.user_rich_menus: dict[str, str] = {}
            self.quota: dict[str, Any] = {"type": "none"}
            self.total_usage: int | None = None  # None: count accepted sends
            self.narrowcasts: dict[str, dict[str, Any]] = {}

    # -- ids ------------------------------------------------------------------------------------------------------

    def next_message_id(self) -> str:
        return str(next(self._ids))

    @staticmethod
    def new_token(nbytes: int = 16) -> str:
        return secrets.token_hex(nbytes)

    # -- injections -----------------------------------------------------------------------------------------------

    def take_injection(self, kind: str, path: str) -> Injection | None:
        """The first matching injection of ``kind`` (consuming one of its ``times``), or None."""
        with self.lock:
            for item in self.injections:
                if item.kind != kind or not item.matches(path):
                    continue
                if item.remaining is not None:
                    item.remaining -= 1
                    if item.remaining <= 0:
                        self.injections.remove(item)
                return item
            return None

    # -- reply tokens ---------------------------------------------------------------------------------------------

    def issue_reply_token(self, user_id: str, ttl: float = REPLY_TOKEN_TTL_SECONDS) -> str:
        token = self.new_token()
        with self.lock:
            self.reply_tokens[token] = ReplyToken(user_id=user_id, expires_at=time.monotonic() + ttl)
        return token

    def use_reply_token(self, token: str) -> str | None:
        """The user the token was issued for, marking it used; None if unknown, used or expired."""
        with self.lock:
            entry = self.reply_tokens.get(token)
            if entry is None or entry.used or time.monotonic() > entry.expires_at:
                return None
            entry.used = True
            return entry.user_id

    # -- quota ----------------------------------------------------------------------------------------------------

    def usage(self) -> int:
        with self.lock:
            if self.total_usage is not None:
                return self.total_usage
            return sum(
                len(call.recipients)
                for call in self.calls
                if call.accepted and call.operation_id in ("pushMessage", "multicast", "broadcast")
            )
