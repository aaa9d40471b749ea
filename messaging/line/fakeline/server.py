"""A fake LINE Messaging API platform served over real HTTP on 127.0.0.1 for tests (and local demos).

Two listening ports share one state: ``url`` plays ``https://api.line.me`` (host "A") and ``data_url`` plays
``https://api-data.line.me`` (host "D"). Every request is routed to an operation of LINE's OpenAPI specs and
validated (auth header, path/query/header parameters, JSON body incl. discriminators); an operation the spec
serves on the other host answers 404. Invalid requests answer 400/401/404/405/415 with a LINE-like JSON body
and are recorded as invalid, so a test fixture can fail the test.

Order of checks: route → host → Authorization → parameters and body → injected failures (``fail_next`` /
``fail_all``) → stateful handler → record → injected delay (``delay_next``; the request has already been
processed, only the answer is late – which is what a client time-out looks like).

The API port also serves a small control API under ``/_fake/`` (``control.py``: reply tokens, users, contents,
delivered messages) for a fake running outside pytest (``manage.py fakeline``); it is neither validated nor recorded.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from messaging.line.openapi.validation import (
    HOST_API,
    HOST_DATA,
    HOST_NAMES,
    ErrorDetail,
    Operation,
    SpecSet,
    load_specs,
)

from .control import FakeLineControl
from .state import (
    DEFAULT_ERROR_BODIES,
    MAX_DELAY_SECONDS,
    REPLY_TOKEN_TTL_SECONDS,
    AcceptedRetry,
    Call,
    FakeLineState,
    Injection,
)

RICH_MENU_IMAGE_MAX_BYTES = 1_000_000  # LINE: "Max file size: 1 MB" (the stricter reading)
RICH_MENU_IMAGE_TYPES = {"image/jpeg": "JPEG", "image/png": "PNG"}
RETRY_KEY_OPERATIONS = ("pushMessage", "multicast", "narrowcast", "broadcast")
_BEARER_RE = re.compile(r"^Bearer\s+(\S+)$")


@dataclass
class Response:
    status: int
    body: Any = None  # JSON-serialisable, or bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    def encoded(self) -> bytes:
        if isinstance(self.body, bytes | bytearray):
            return bytes(self.body)
        if self.body is None:
            return b""
        return json.dumps(self.body, ensure_ascii=False).encode("utf-8")


def _error(status: int, message: str, details: list[ErrorDetail] | None = None) -> Response:
    body: dict[str, Any] = {"message": message}
    if details:
        body["details"] = [d.as_dict() for d in details]
    return Response(status, body)


class RequestRejected(Exception):  # noqa: N818 (control flow, not an error of the fake)
    """Raised by operation handlers: answer ``response``; ``invalid`` marks a request breaking LINE's rules."""

    def __init__(self, response: Response, *, invalid: bool = False, details: list[ErrorDetail] | None = None):
        super().__init__(response.body)
        self.response = response
        self.invalid = invalid
        self.details = details or []


# ----------------------------------------------------------------------------------------------------------------
# The platform (no HTTP): routes, validates, applies behaviours and state


class FakeLinePlatform:
    def __init__(self, state: FakeLineState | None = None, specs: SpecSet | None = None):
        self.state = state or FakeLineState()
        self.specs = specs or load_specs()
        self._handlers: dict[str, Callable[[Call, Operation], Response]] = {
            "replyMessage": self._reply,
            "pushMessage": self._push,
            "multicast": self._multicast,
            "broadcast": self._broadcast,
            "narrowcast": self._narrowcast,
            "getNarrowcastProgress": self._narrowcast_progress,
            "getMessageQuota": self._quota,
            "getMessageQuotaConsumption": self._quota_consumption,
            "getProfile": self._profile,
            "getFollowers": self._followers,
            "getMessageContent": self._content,
            "getMessageContentPreview": self._content,
            "getMessageContentTranscodingByMessageId": self._content_transcoding,
            "createRichMenu": self._create_rich_menu,
            "validateRichMenuObject": self._validate_rich_menu,
            "getRichMenu": self._get_rich_menu,
            "deleteRichMenu": self._delete_rich_menu,
            "getRichMenuList": self._rich_menu_list,
            "setRichMenuImage": self._set_rich_menu_image,
            "getRichMenuImage": self._get_rich_menu_image,
            "setDefaultRichMenu": self._set_default_rich_menu,
            "getDefaultRichMenuId": self._get_default_rich_menu,
            "cancelDefaultRichMenu": self._cancel_default_rich_menu,
            "linkRichMenuIdToUser": self._link_user,
            "unlinkRichMenuIdFromUser": self._unlink_user,
            "getRichMenuIdOfUser": self._rich_menu_of_user,
            "linkRichMenuIdToUsers": self._bulk_link,
            "unlinkRichMenuIdFromUsers": self._bulk_unlink,
            "createRichMenuAlias": self._create_alias,
            "updateRichMenuAlias": self._update_alias,
            "deleteRichMenuAlias": self._delete_alias,
            "getRichMenuAlias": self._get_alias,
            "getRichMenuAliasList": self._alias_list,
        }

    # -- entry point ----------------------------------------------------------------------------------------------

    def handle(
        self, host: str, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[Response, float]:
        """Answer one request; returns the response and how long to wait before sending it."""
        split = urlsplit(target)
        path = split.path or "/"
        query_multi = parse_qs(split.query, keep_blank_values=True)
        state = self.state
        call = Call(
            method=method,
            host=host,
            path=path,
            query={k: v[-1] for k, v in query_multi.items()},
            headers=headers,
            body=None,
            raw_body=body,
            content_type=headers.get("content-type", ""),
            timestamp=time.time(),
            request_id=str(uuid.uuid4()),
        )
        try:
            response = self._process(call, query_multi)
        except RequestRejected as rejected:
            response = rejected.response
            call.invalid = rejected.invalid
            call.errors = rejected.details or call.errors
        except Exception as exc:  # a bug in the fake must fail the test too, not hang or pass
            message = f"internal error in the fake LINE server: {exc!r}"
            response = _error(500, message)
            call.invalid = True
            call.errors = [ErrorDetail(message)]
        response.headers.setdefault("x-line-request-id", call.request_id)
        call.status = response.status
        call.response = None if isinstance(response.body, bytes | bytearray) else response.body
        call.response_headers = dict(response.headers)
        with state.lock:
            state.calls.append(call)
        delay = state.take_injection("delay", path)
        seconds = min(delay.seconds, MAX_DELAY_SECONDS) if delay else 0.0
        return response, seconds

    def _process(self, call: Call, query_multi: dict[str, list[str]]) -> Response:
        specs = self.specs
        match = specs.match(call.method, call.path)
        if match.operation is None:
            if match.allowed_methods:
                message = (
                    f"Method {call.method} is not allowed for {call.path} (allowed: {', '.join(match.allowed_methods)})"
                )
                raise RequestRejected(_error(405, message), invalid=True, details=[ErrorDetail(message)])
            message = f"No LINE API operation matches {call.method} {call.path}"
            raise RequestRejected(
                _error(404, "Not found", [ErrorDetail(message)]), invalid=True, details=[ErrorDetail(message)]
            )
        op = match.operation
        call.operation_id = op.operation_id
        call.path_params = match.path_params
        if op.host != call.host:
            right = "data_url / LINE_API_DATA_BASE_URL" if op.host == HOST_DATA else "url / LINE_API_BASE_URL"
            message = (
                f"{op.operation_id} ({op.method} {op.path_template}) is served by {HOST_NAMES[op.host]}, "
                f"not {HOST_NAMES[call.host]}: send it to the fake's {right}"
            )
            raise RequestRejected(_error(404, message), invalid=True, details=[ErrorDetail(message)])
        if op.requires_auth:
            auth = _BEARER_RE.match(call.headers.get("authorization", ""))
            tokens = self.state.access_tokens
            if not auth or (tokens is not None and auth.group(1) not in tokens):
                detail = ErrorDetail(
                    "missing or malformed 'Authorization: Bearer <channel access token>'", "Authorization"
                )
                raise RequestRejected(Response(401, dict(DEFAULT_ERROR_BODIES[401])), invalid=True, details=[detail])
        details = specs.parameter_errors(op, match.path_params, query_multi, call.headers)
        if details:
            raise RequestRejected(
                _error(400, f"The request has {len(details)} invalid parameter(s)", details),
                invalid=True,
                details=details,
            )
        parsed, details, status = specs.body_errors(op, call.content_type, call.raw_body)
        call.body = parsed
        if details:
            message = f"The request body has {len(details)} error(s)" if status == 400 else details[0].message
            raise RequestRejected(_error(status, message, details), invalid=True, details=details)
        injected = self.state.take_injection("fail", call.path)
        if injected is not None:
            call.injected = True
            body = (
                injected.body
                if injected.body is not None
                else DEFAULT_ERROR_BODIES.get(injected.status, {"message": HTTPStatus(injected.status).phrase})
            )
            return Response(injected.status, body, headers=dict(injected.headers))
        handler = self._handlers.get(op.operation_id)
        with self.state.lock:  # one state transition at a time (retry keys, reply tokens, ...)
            if handler is None:
                return Response(op.success_status, {})
            return handler(call, op)

    # -- messaging --------------------------------------------------------------------------------------------

    def _sent_messages(self, messages: list[dict[str, Any]]) -> list[dict[str, str]]:
        return [{"id": self.state.next_message_id(), "quoteToken": self.state.new_token(24)} for _ in messages]

    def _retry_conflict(self, call: Call) -> Response | None:
        key = call.headers.get("x-line-retry-key")
        accepted = self.state.retry_keys.get(key) if key else None
        if accepted is None:
            return None
        body: dict[str, Any] = {"message": "The retry key is already accepted"}
        if accepted.sent_messages:
            body["sentMessages"] = accepted.sent_messages
        return Response(409, body, headers={"x-line-accepted-request-id": accepted.request_id})

    def _accept_send(self, call: Call, op: Operation, recipients: tuple[str, ...], body: Any) -> Response:
        state = self.state
        quota = state.quota
        if quota.get("type") == "limited" and state.usage() + len(recipients) > int(quota.get("value", 0)):
            return Response(429, {"message": "You have reached your monthly limit."})
        call.recipients = recipients
        key = call.headers.get("x-line-retry-key")
        if key:
            sent = body.get("sentMessages", []) if isinstance(body, dict) else []
            state.retry_keys[key] = _accepted(call, op, sent)
        return Response(op.success_status, body)

    def _reply(self, call: Call, op: Operation) -> Response:
        user_id = self.state.use_reply_token(call.body["replyToken"])
        if user_id is None:
            return Response(400, {"message": "Invalid reply token"})
        call.recipients = (user_id,)
        return Response(op.success_status, {"sentMessages": self._sent_messages(call.body["messages"])})

    def _push(self, call: Call, op: Operation) -> Response:
        conflict = self._retry_conflict(call)
        if conflict:
            return conflict
        body = {"sentMessages": self._sent_messages(call.body["messages"])}
        return self._accept_send(call, op, (call.body["to"],), body)

    def _multicast(self, call: Call, op: Operation) -> Response:
        return self._retry_conflict(call) or self._accept_send(call, op, tuple(call.body["to"]), {})

    def _broadcast(self, call: Call, op: Operation) -> Response:
        return self._retry_conflict(call) or self._accept_send(call, op, tuple(self.state.followers), {})

    def _narrowcast(self, call: Call, op: Operation) -> Response:
        conflict = self._retry_conflict(call)
        if conflict:
            return conflict
        response = self._accept_send(call, op, (), {})
        if response.status == op.success_status:
            now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
            self.state.narrowcasts[call.request_id] = {
                "phase": "succeeded",
                "successCount": 0,
                "failureCount": 0,
                "targetCount": 0,
                "acceptedTime": now,
                "completedTime": now,
            }
        return response

    def _narrowcast_progress(self, call: Call, op: Operation) -> Response:
        progress = self.state.narrowcasts.get(call.query.get("requestId", ""))
        if progress is None:
            return Response(404, {"message": "Not found"})
        return Response(200, dict(progress))

    def _quota(self, call: Call, op: Operation) -> Response:
        return Response(200, dict(self.state.quota))

    def _quota_consumption(self, call: Call, op: Operation) -> Response:
        return Response(200, {"totalUsage": self.state.usage()})

    def _profile(self, call: Call, op: Operation) -> Response:
        user = self.state.users.get(call.path_params["userId"])
        if user is None:
            return Response(404, {"message": "Not found"})
        return Response(200, dict(user))

    def _followers(self, call: Call, op: Operation) -> Response:
        limit = int(call.query.get("limit", 300))
        start = int(call.query["start"]) if call.query.get("start", "").isdigit() else 0
        ids = self.state.followers[start : start + limit]
        body: dict[str, Any] = {"userIds": ids}
        if start + limit < len(self.state.followers):
            body["next"] = str(start + limit)
        return Response(200, body)

    def _content(self, call: Call, op: Operation) -> Response:
        content = self.state.contents.get(call.path_params["messageId"])
        if content is None:
            return Response(404, {"message": "Not found"})
        data, content_type = content
        return Response(200, data, content_type=content_type)

    def _content_transcoding(self, call: Call, op: Operation) -> Response:
        if call.path_params["messageId"] not in self.state.contents:
            return Response(404, {"message": "Not found"})
        return Response(200, {"status": "succeeded"})

    # -- rich menus -----------------------------------------------------------------------------------------------

    def _menu_or_404(self, rich_menu_id: str) -> dict[str, Any]:
        menu = self.state.rich_menus.get(rich_menu_id)
        if menu is None:
            raise RequestRejected(Response(404, {"message": "Not found"}))
        return menu

    def _menu_with_image(self, rich_menu_id: str) -> dict[str, Any]:
        menu = self._menu_or_404(rich_menu_id)
        if rich_menu_id not in self.state.rich_menu_images:
            raise RequestRejected(Response(400, {"message": "must upload richmenu image before applying it to user"}))
        return menu

    def _rich_menu_object_checked(self, call: Call) -> None:
        details = rich_menu_object_errors(call.body)
        if details:
            message = f"The request body has {len(details)} error(s)"
            raise RequestRejected(_error(400, message, details), invalid=True, details=details)

    def _validate_rich_menu(self, call: Call, op: Operation) -> Response:
        self._rich_menu_object_checked(call)
        return Response(200, {})

    def _create_rich_menu(self, call: Call, op: Operation) -> Response:
        self._rich_menu_object_checked(call)
        rich_menu_id = "richmenu-" + self.state.new_token()
        self.state.rich_menus[rich_menu_id] = {"richMenuId": rich_menu_id, **call.body}
        return Response(200, {"richMenuId": rich_menu_id})

    def _get_rich_menu(self, call: Call, op: Operation) -> Response:
        return Response(200, dict(self._menu_or_404(call.path_params["richMenuId"])))

    def _delete_rich_menu(self, call: Call, op: Operation) -> Response:
        state = self.state
        rich_menu_id = call.path_params["richMenuId"]
        self._menu_or_404(rich_menu_id)
        del state.rich_menus[rich_menu_id]
        state.rich_menu_images.pop(rich_menu_id, None)
        if state.default_rich_menu == rich_menu_id:
            state.default_rich_menu = None
        for user_id in [u for u, m in state.user_rich_menus.items() if m == rich_menu_id]:
            del state.user_rich_menus[user_id]
        return Response(200, {})

    def _rich_menu_list(self, call: Call, op: Operation) -> Response:
        return Response(200, {"richmenus": [dict(m) for m in self.state.rich_menus.values()]})

    def _set_rich_menu_image(self, call: Call, op: Operation) -> Response:
        rich_menu_id = call.path_params["richMenuId"]
        menu = self._menu_or_404(rich_menu_id)
        content_type = call.content_type.split(";", 1)[0].strip().lower()
        details = rich_menu_image_errors(call.raw_body, content_type, menu.get("size") or {})
        if details:
            raise RequestRejected(_error(400, "The rich menu image is invalid", details), invalid=True, details=details)
        if rich_menu_id in self.state.rich_menu_images:
            return Response(400, {"message": "An image has already been uploaded to the richmenu"})
        self.state.rich_menu_images[rich_menu_id] = (call.raw_body, content_type)
        return Response(200, {})

    def _get_rich_menu_image(self, call: Call, op: Operation) -> Response:
        image = self.state.rich_menu_images.get(call.path_params["richMenuId"])
        if image is None:
            return Response(404, {"message": "Not found"})
        return Response(200, image[0], content_type=image[1])

    def _set_default_rich_menu(self, call: Call, op: Operation) -> Response:
        rich_menu_id = call.path_params["richMenuId"]
        self._menu_with_image(rich_menu_id)
        self.state.default_rich_menu = rich_menu_id
        return Response(200, {})

    def _get_default_rich_menu(self, call: Call, op: Operation) -> Response:
        if self.state.default_rich_menu is None:
            return Response(404, {"message": "no default richmenu"})
        return Response(200, {"richMenuId": self.state.default_rich_menu})

    def _cancel_default_rich_menu(self, call: Call, op: Operation) -> Response:
        self.state.default_rich_menu = None
        return Response(200, {})

    def _link_user(self, call: Call, op: Operation) -> Response:
        rich_menu_id = call.path_params["richMenuId"]
        self._menu_with_image(rich_menu_id)
        self.state.user_rich_menus[call.path_params["userId"]] = rich_menu_id
        return Response(200, {})

    def _unlink_user(self, call: Call, op: Operation) -> Response:
        self.state.user_rich_menus.pop(call.path_params["userId"], None)
        return Response(200, {})

    def _rich_menu_of_user(self, call: Call, op: Operation) -> Response:
        rich_menu_id = self.state.user_rich_menus.get(call.path_params["userId"])
        if rich_menu_id is None:
            return Response(404, {"message": "the user has no richmenu"})
        return Response(200, {"richMenuId": rich_menu_id})

    def _bulk_link(self, call: Call, op: Operation) -> Response:
        rich_menu_id = call.body["richMenuId"]
        self._menu_with_image(rich_menu_id)
        for user_id in call.body["userIds"]:
            self.state.user_rich_menus[user_id] = rich_menu_id
        return Response(op.success_status, {})

    def _bulk_unlink(self, call: Call, op: Operation) -> Response:
        for user_id in call.body["userIds"]:
            self.state.user_rich_menus.pop(user_id, None)
        return Response(op.success_status, {})

    def _create_alias(self, call: Call, op: Operation) -> Response:
        alias_id, rich_menu_id = call.body["richMenuAliasId"], call.body["richMenuId"]
        if rich_menu_id not in self.state.rich_menus:
            return Response(400, {"message": "richmenu not found"})
        if alias_id in self.state.aliases:
            return Response(400, {"message": "conflict richmenu alias id"})
        self.state.aliases[alias_id] = rich_menu_id
        return Response(200, {})

    def _alias_or_404(self, alias_id: str) -> str:
        if alias_id not in self.state.aliases:
            raise RequestRejected(Response(404, {"message": "Not found"}))
        return self.state.aliases[alias_id]

    def _update_alias(self, call: Call, op: Operation) -> Response:
        alias_id = call.path_params["richMenuAliasId"]
        self._alias_or_404(alias_id)
        if call.body["richMenuId"] not in self.state.rich_menus:
            return Response(400, {"message": "richmenu not found"})
        self.state.aliases[alias_id] = call.body["richMenuId"]
        return Response(200, {})

    def _delete_alias(self, call: Call, op: Operation) -> Response:
        alias_id = call.path_params["richMenuAliasId"]
        self._alias_or_404(alias_id)
        del self.state.aliases[alias_id]
        return Response(200, {})

    def _get_alias(self, call: Call, op: Operation) -> Response:
        alias_id = call.path_params["richMenuAliasId"]
        return Response(200, {"richMenuAliasId": alias_id, "richMenuId": self._alias_or_404(alias_id)})

    def _alias_list(self, call: Call, op: Operation) -> Response:
        aliases = [{"richMenuAliasId": a, "richMenuId": m} for a, m in self.state.aliases.items()]
        return Response(200, {"aliases": aliases})


def _accepted(call: Call, op: Operation, sent: list[dict[str, str]]) -> AcceptedRetry:
    return AcceptedRetry(request_id=call.request_id, operation_id=op.operation_id, sent_messages=list(sent))


def rich_menu_object_errors(menu: dict[str, Any]) -> list[ErrorDetail]:
    """LINE's rules for a rich menu object beyond the schema (API reference, "Rich menu object"): the size
    (width 800–2500 px, height ≥ 250 px, width/height ≥ 1.45), areas inside it, action labels ≤ 20 characters."""
    details: list[ErrorDetail] = []
    width, height = menu["size"]["width"], menu["size"]["height"]
    if not 800 <= width <= 2500 or height < 250 or width / height < 1.45:
        details.append(ErrorDetail("must be specified valid size", "size"))
    for index, area in enumerate(menu["areas"]):
        bounds = area["bounds"]
        if bounds["x"] + bounds["width"] > width or bounds["y"] + bounds["height"] > height:
            details.append(ErrorDetail("must be inside the rich menu size", f"areas[{index}].bounds"))
        if len(area["action"].get("label") or "") > 20:
            details.append(ErrorDetail("Length must be between 0 and 20", f"areas[{index}].action.label"))
    return details


def rich_menu_image_errors(data: bytes, content_type: str, size: dict[str, Any]) -> list[ErrorDetail]:
    """LINE's rich menu image rules (API reference, "Upload rich menu image"): JPEG or PNG, at most 1 MB,
    width 800–2500 px, height ≥ 250 px, width/height ≥ 1.45, and the same size as the rich menu."""
    from PIL import Image, UnidentifiedImageError

    details: list[ErrorDetail] = []
    if content_type not in RICH_MENU_IMAGE_TYPES:
        details.append(
            ErrorDetail(f"Content-Type must be image/jpeg or image/png, got {content_type!r}", "Content-Type")
        )
    if len(data) > RICH_MENU_IMAGE_MAX_BYTES:
        details.append(ErrorDetail(f"image is {len(data)} bytes, the maximum is {RICH_MENU_IMAGE_MAX_BYTES}", "body"))
    try:
        with Image.open(io.BytesIO(data)) as image:
            image_format, (width, height) = image.format, image.size
    except (UnidentifiedImageError, OSError, ValueError):
        details.append(ErrorDetail("body is not a readable JPEG or PNG image", "body"))
        return details
    expected_format = RICH_MENU_IMAGE_TYPES.get(content_type)
    if image_format not in RICH_MENU_IMAGE_TYPES.values():
        details.append(ErrorDetail(f"image format is {image_format}, must be JPEG or PNG", "body"))
    elif expected_format and image_format != expected_format:
        details.append(ErrorDetail(f"image is {image_format} but Content-Type is {content_type}", "Content-Type"))
    if not 800 <= width <= 2500:
        details.append(ErrorDetail(f"image width {width}px must be between 800 and 2500", "body"))
    if height < 250:
        details.append(ErrorDetail(f"image height {height}px must be at least 250", "body"))
    if height and width / height < 1.45:
        details.append(ErrorDetail(f"image aspect ratio {width}/{height} must be at least 1.45", "body"))
    if (width, height) != (size.get("width"), size.get("height")):
        details.append(
            ErrorDetail(
                f"image is {width}x{height}px but the rich menu size is {size.get('width')}x{size.get('height')}",
                "body",
            )
        )
    return details


# ----------------------------------------------------------------------------------------------------------------
# HTTP plumbing


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeLINE/1.0"
    timeout = 60  # idle keep-alive connections
    # Headers and body go out in separate writes; with Nagle on, every call after the first on a
    # kept-alive connection waited ~40 ms for the client's delayed ACK.
    disable_nagle_algorithm = True

    server: _HostServer

    def _serve(self) -> None:
        control = self.server.control
        if control is not None and control.handles(urlsplit(self.path).path):
            self._serve_control(control)
            return
        try:
            body = self._read_body()
        except ValueError as exc:
            self.send_error(400, str(exc))
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        response, delay = self.server.platform.handle(self.server.host_kind, self.command, self.path, headers, body)
        payload = response.encoded()
        if delay:
            time.sleep(delay)
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(payload)))
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (time-out tests)
            self.close_connection = True

    def _serve_control(self, control: FakeLineControl) -> None:
        """A request of the control API (``/_fake/...``): never validated as LINE's, never recorded."""
        limit = control.body_limit(self.command, urlsplit(self.path).path)
        try:
            declared = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            declared = -1
        if declared < 0 or self.headers.get("Transfer-Encoding"):
            status, answer = 411, {"message": "send a Content-Length (no chunked bodies)"}
            self.close_connection = True
        elif declared > limit:
            status, answer = 413, {"message": f"the body is larger than {limit} bytes"}
            self.close_connection = True
        else:
            body = self.rfile.read(declared) if declared else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, answer = control.handle(self.command, self.path, headers, body)
        payload = json.dumps(answer, ensure_ascii=False).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size_line = self.rfile.readline().split(b";", 1)[0].strip()
                size = int(size_line, 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        pass


class _HostServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, host_kind: str, platform: FakeLinePlatform, port: int = 0, control: FakeLineControl | None = None
    ):
        super().__init__(("127.0.0.1", port), _Handler)
        self.host_kind = host_kind
        self.platform = platform
        self.control = control  # the control API (/_fake/...), on the API host only

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class FakeLineServer:
    """The fake LINE platform on two local ports plus the helpers tests use (see the ``fake_line`` fixture)."""

    def __init__(self, *, api_port: int = 0, data_port: int = 0) -> None:
        """``api_port`` / ``data_port``: fixed ports for a fake run by hand (``manage.py fakeline``); 0 picks free
        ones (tests)."""
        self.platform = FakeLinePlatform()
        self.state = self.platform.state
        #: The control API served under /_fake/ on the API port (see control.py).
        self.control = FakeLineControl(self.state)
        self._ports = {HOST_API: api_port, HOST_DATA: data_port}
        self._servers: dict[str, _HostServer] = {}
        self._threads: list[threading.Thread] = []

    # -- lifecycle ------------------------------------------------------------------------------------------------

    def start(self) -> FakeLineServer:
        if self._servers:
            return self
        for kind in (HOST_API, HOST_DATA):
            try:
                server = _HostServer(
                    kind, self.platform, self._ports[kind], self.control if kind == HOST_API else None
                )
            except OSError:
                self.stop()  # the other port, if it was already open
                raise
            thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"fake-line-{kind}", daemon=True
            )
            thread.start()
            self._servers[kind] = server
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        for server in self._servers.values():
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers.clear()
        self._threads.clear()

    def __enter__(self) -> FakeLineServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL standing in for https://api.line.me (settings.LINE_API_BASE_URL)."""
        return self._servers[HOST_API].url

    @property
    def data_url(self) -> str:
        """Base URL standing in for https://api-data.line.me (settings.LINE_API_DATA_BASE_URL)."""
        return self._servers[HOST_DATA].url

    @property
    def control_url(self) -> str:
        """Base URL of the control API (issue reply tokens, add users and contents, read delivered messages)."""
        return self.url + "/_fake"

    def reset(self) -> None:
        """Forget calls, behaviours and data (done before every test by the fixture)."""
        self.state.reset()

    # -- recorded calls -------------------------------------------------------------------------------------------

    def calls(
        self,
        path: str | None = None,
        method: str | None = None,
        *,
        host: str | None = None,
        operation_id: str | None = None,
        accepted: bool | None = None,
    ) -> list[Call]:
        """Recorded calls, oldest first. ``path`` matches exactly, or as a prefix when it ends with ``*``."""
        with self.state.lock:
            calls = list(self.state.calls)
        result = []
        for call in calls:
            if path is not None:
                if path.endswith("*"):
                    if not call.path.startswith(path[:-1]):
                        continue
                elif call.path != path:
                    continue
            if method is not None and call.method != method.upper():
                continue
            if host is not None and call.host != host:
                continue
            if operation_id is not None and call.operation_id != operation_id:
                continue
            if accepted is not None and call.accepted != accepted:
                continue
            result.append(call)
        return result

    def last_call(self, path: str | None = None, method: str | None = None, **filters: Any) -> Call:
        calls = self.calls(path, method, **filters)
        if not calls:
            raise AssertionError(f"fake LINE received no call matching path={path!r} method={method!r} {filters}")
        return calls[-1]

    def messages_sent_to(self, user_id: str) -> list[dict[str, Any]]:
        """Message objects delivered to ``user_id`` by accepted reply/push/multicast/broadcast calls, in order
        (broadcast reaches the users added with ``add_user(..., follower=True)``; narrowcast is not expanded)."""
        messages: list[dict[str, Any]] = []
        for call in self.calls(accepted=True):
            if user_id in call.recipients and isinstance(call.body, dict):
                messages.extend(call.body.get("messages", []))
        return messages

    def invalid_calls(self) -> list[Call]:
        return [call for call in self.calls() if call.invalid]

    def expect_invalid(self) -> FakeLineServer:
        """Declare that this test sends invalid requests on purpose (otherwise the fixture fails the test)."""
        with self.state.lock:
            self.state.invalid_expected = True
        return self

    def unexpected_invalid_calls(self) -> list[Call]:
        with self.state.lock:
            if self.state.invalid_expected:
                return []
        return self.invalid_calls()

    # -- behaviours -----------------------------------------------------------------------------------------------

    def fail_next(
        self,
        status: int = 429,
        times: int = 1,
        path_prefix: str | None = None,
        *,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next ``times`` valid requests (under ``path_prefix``) with ``status`` instead of
        processing them (429 → ``{"message": "Too Many Requests"}``)."""
        self._inject(Injection("fail", times, path_prefix, status=status, body=body, headers=dict(headers or {})))

    def fail_all(self, status: int = 500, path_prefix: str | None = None, *, body: Any = None) -> None:
        """Answer every valid request with ``status`` until ``recover()``."""
        self._inject(Injection("fail", None, path_prefix, status=status, body=body))

    def recover(self) -> None:
        """Drop all pending ``fail_next``/``fail_all``/``delay_next`` behaviours."""
        with self.state.lock:
            self.state.injections.clear()

    @contextlib.contextmanager
    def outage(self, status: int = 503, path_prefix: str | None = None) -> Iterator[None]:
        """``with fake_line.outage(): ...`` – every call fails inside the block."""
        self.fail_all(status, path_prefix)
        try:
            yield
        finally:
            self.recover()

    def delay_next(self, seconds: float, times: int = 1, path_prefix: str | None = None) -> None:
        """Answer the next ``times`` requests ``seconds`` late (the request is processed first)."""
        self._inject(Injection("delay", times, path_prefix, seconds=seconds))

    def _inject(self, injection: Injection) -> None:
        if injection.remaining is not None and injection.remaining < 1:
            raise ValueError("times must be >= 1")
        with self.state.lock:
            self.state.injections.append(injection)

    def accept_tokens(self, *tokens: str) -> None:
        """Only these channel access tokens pass (default: any non-empty bearer token)."""
        with self.state.lock:
            self.state.access_tokens = set(tokens)

    # -- LINE-side data -------------------------------------------------------------------------------------------

    def issue_reply_token(self, user_id: str, *, ttl: float = REPLY_TOKEN_TTL_SECONDS) -> str:
        """A reply token for ``user_id`` valid once within ``ttl`` seconds (put it in your webhook body)."""
        return self.state.issue_reply_token(user_id, ttl)

    def add_user(
        self,
        user_id: str,
        display_name: str = "LINE User",
        *,
        picture_url: str | None = None,
        status_message: str | None = None,
        language: str | None = None,
        follower: bool = True,
    ) -> dict[str, Any]:
        profile: dict[str, Any] = {"userId": user_id, "displayName": display_name}
        if picture_url:
            profile["pictureUrl"] = picture_url
        if status_message:
            profile["statusMessage"] = status_message
        if language:
            profile["language"] = language
        with self.state.lock:
            self.state.users[user_id] = profile
            if follower and user_id not in self.state.followers:
                self.state.followers.append(user_id)
        return profile

    def add_content(self, message_id: str, data: bytes, content_type: str = "image/jpeg") -> None:
        """Serve ``data`` at ``GET /v2/bot/message/{message_id}/content`` on the data host."""
        with self.state.lock:
            self.state.contents[message_id] = (bytes(data), content_type)

    def set_quota(self, *, type: str | None = None, value: int | None = None, total_usage: int | None = None) -> None:  # noqa: A002
        """``type`` "none" (default, unlimited) or "limited" with ``value``; ``total_usage`` fixes the reported
        consumption (default: recipients of accepted push/multicast/broadcast). Sends beyond a limited quota
        answer 429 "You have reached your monthly limit."."""
        with self.state.lock:
            if type is not None:
                self.state.quota = {"type": type} if type == "none" else {"type": type, "value": int(value or 0)}
            elif value is not None:
                self.state.quota = {"type": "limited", "value": int(value)}
            self.state.total_usage = total_usage

    @property
    def rich_menus(self) -> dict[str, dict[str, Any]]:
        with self.state.lock:
            return {k: dict(v) for k, v in self.state.rich_menus.items()}

    @property
    def rich_menu_aliases(self) -> dict[str, str]:
        with self.state.lock:
            return dict(self.state.aliases)

    @property
    def default_rich_menu_id(self) -> str | None:
        return self.state.default_rich_menu

    def rich_menu_of(self, user_id: str) -> str | None:
        """The rich menu linked to ``user_id`` individually (None if none)."""
        with self.state.lock:
            return self.state.user_rich_menus.get(user_id)

    def rich_menu_image(self, rich_menu_id: str) -> tuple[bytes, str] | None:
        with self.state.lock:
            return self.state.rich_menu_images.get(rich_menu_id)
