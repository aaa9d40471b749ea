"""The only module that talks to LINE: a thin wrapper over line-bot-sdk v3.

Two API clients, as LINE serves two hosts: MessagingApi on settings.LINE_API_BASE_URL
(api.line.me) and MessagingApiBlob (message content) on settings.LINE_API_DATA_BASE_URL
(api-data.line.me). Calls never raise for HTTP or network errors: they return a `SendResult`
(status, LINE's request id, LINE's error message) so the caller decides what to do. The SDK's own
retries are off; the outbox does the retrying, with LINE's retry key.

Message content is streamed and never read past the caller's limit (see `message_content`).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import quote

import urllib3
from django.conf import settings
from linebot.v3.messaging import (
    ApiClient,
    ApiException,
    Configuration,
    CreateRichMenuAliasRequest,
    MessagingApi,
    MessagingApiBlob,
    RichMenuBulkLinkRequest,
    RichMenuBulkUnlinkRequest,
    RichMenuRequest,
    UpdateRichMenuAliasRequest,
)

logger = logging.getLogger(__name__)

DEFAULT_CONNECT_TIMEOUT_SECONDS = 5.0
CONTENT_CHUNK_BYTES = 64 * 1024
CONTENT_PREFIX_BYTES = 64 * 1024  # kept of content known to be too large: enough to tell its type
# The connection could not even be made: the request certainly never reached LINE.
_NOT_SENT_ERRORS = (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError)


@dataclass(frozen=True)
class SendResult:
    """What happened to one call. `status` is None when no HTTP answer came (time-out, network).

    `request_sent` is False only when the request certainly never reached LINE (the connection
    could not be made). With no answer and `request_sent` True, LINE may or may not have acted on it.
    """

    status: int | None
    request_id: str = ""
    accepted_request_id: str = ""  # 409: the request that was accepted earlier with this retry key
    error: str = ""
    request_sent: bool = True
    retry_after: float | None = None  # seconds, when LINE answered with a Retry-After header

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True)
class Quota:
    """This month's message quota. `limit` None: no limit (LINE's type "none"); `used`: sent this month."""

    result: SendResult
    limit: int | None = None
    used: int = 0

    @property
    def remaining(self) -> int | None:
        return None if self.limit is None else max(self.limit - self.used, 0)


@dataclass(frozen=True)
class Content:
    """Message content fetched from LINE (or why it could not be).

    `too_large`: the content is larger than the limit asked for; `data` then holds only its first
    bytes (for telling its type) and `size` is LINE's Content-Length, or more than the limit when
    LINE sent none.
    """

    result: SendResult
    data: bytes = b""
    content_type: str = ""
    too_large: bool = False
    size: int = 0


@dataclass(frozen=True)
class RichMenuId:
    """A rich menu id LINE answered with (create rich menu, get alias), or why there is none (`result`)."""

    result: SendResult
    rich_menu_id: str = ""


@dataclass(frozen=True)
class Profile:
    """A LINE user's profile (getProfile), or why it could not be fetched (`result`).

    404: the user is not (or no longer) a friend of the account, or unknown. The name and picture
    are personal data: kept out of repr so that they never reach a log by accident.
    """

    result: SendResult
    display_name: str = field(default="", repr=False)
    picture_url: str = field(default="", repr=False)

    @property
    def not_found(self) -> bool:
        return self.result.status == 404


def _timeout() -> tuple[float, float]:
    read = float(settings.LINE_API_TIMEOUT_SECONDS)
    return (min(read, DEFAULT_CONNECT_TIMEOUT_SECONDS), read)


def _configuration(host: str) -> Configuration:
    configuration = Configuration(host=host.rstrip("/"), access_token=settings.LINE_CHANNEL_ACCESS_TOKEN or "")
    configuration.retries = False  # no hidden retries: a reply must never be sent twice
    return configuration


def _header(headers, name: str) -> str:
    if not headers:
        return ""
    for key, value in dict(headers).items():
        if key.lower() == name:
            return str(value)
    return ""


def _line_message(body) -> str:
    """LINE's error message (with the properties it names), or the raw body shortened."""
    if isinstance(body, bytes | bytearray):
        body = bytes(body).decode("utf-8", "replace")
    if not body:
        return ""
    try:
        data = json.loads(body)
    except (TypeError, ValueError):
        return str(body)[:500]
    if not isinstance(data, dict):
        return str(body)[:500]
    message = str(data.get("message") or "")
    details = data.get("details")
    if isinstance(details, list) and details:
        parts = []
        for detail in details[:10]:
            if isinstance(detail, dict):
                where = detail.get("property")
                parts.append(f"{where}: {detail.get('message')}" if where else str(detail.get("message")))
        message = f"{message} ({'; '.join(parts)})" if parts else message
    return message[:1000]


def _retry_after(headers) -> float | None:
    """Retry-After in seconds (it is a number of seconds or an HTTP date); None when absent or unreadable."""
    value = _header(headers, "retry-after").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def _from_exception(error: ApiException) -> SendResult:
    return SendResult(
        status=error.status or None,
        request_id=_header(error.headers, "x-line-request-id"),
        accepted_request_id=_header(error.headers, "x-line-accepted-request-id"),
        error=_line_message(error.body) or str(error.reason or ""),
        retry_after=_retry_after(error.headers),
    )


def _network_failure(error: Exception) -> SendResult:
    return SendResult(
        status=None,
        error=f"{type(error).__name__}: {error}"[:500],
        request_sent=not isinstance(error, _NOT_SENT_ERRORS),
    )


def _content_length(headers) -> int | None:
    try:
        length = int(_header(headers, "content-length"))
    except ValueError:
        return None
    return length if length >= 0 else None


def read_capped(response, max_bytes: int) -> tuple[bytes, bool]:
    """Read a streamed urllib3 response, stopping after `max_bytes` + 1 bytes: (data, too_large).

    When LINE announces more than `max_bytes`, only the first CONTENT_PREFIX_BYTES are read.
    """
    declared = _content_length(response.headers)
    if declared is not None and declared > max_bytes:
        limit = min(max_bytes + 1, CONTENT_PREFIX_BYTES)
    else:
        limit = max_bytes + 1
    chunks, total = [], 0
    for chunk in response.stream(min(CONTENT_CHUNK_BYTES, limit)):
        chunks.append(chunk)
        total += len(chunk)
        if total >= limit:
            break
    data = b"".join(chunks)
    return data, len(data) > max_bytes or (declared is not None and declared > max_bytes)


class LineClient:
    """Use as a context manager: `with LineClient() as line: line.push(...)`, or `shared_client()`."""

    def __init__(self):
        self._api_client = ApiClient(_configuration(settings.LINE_API_BASE_URL))
        self._blob_client = ApiClient(_configuration(settings.LINE_API_DATA_BASE_URL))
        self.messaging = MessagingApi(self._api_client)
        self.blob = MessagingApiBlob(self._blob_client)

    def __enter__(self) -> LineClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for client in (self._api_client, self._blob_client):
            try:
                client.close()  # the SDK's thread pool only: its HTTP connections are cleared below
                client.rest_client.pool_manager.clear()
            except Exception:  # noqa: S110 - closing pools must not hide the real outcome  # nosec B110
                pass

    def _call(self, function, *args, **kwargs) -> tuple[SendResult, object]:
        try:
            response = function(*args, _request_timeout=_timeout(), **kwargs)
        except ApiException as error:
            return _from_exception(error), None
        except (urllib3.exceptions.HTTPError, OSError) as error:
            return _network_failure(error), None
        request_id = _header(response.headers, "x-line-request-id")
        return SendResult(status=response.status_code, request_id=request_id), response

    def reply(self, reply_token: str, messages: list[dict]) -> SendResult:
        return self._send_messages("/v2/bot/message/reply", {"replyToken": reply_token, "messages": messages})

    def push(self, to: str, messages: list[dict], retry_key: str) -> SendResult:
        return self._send_messages("/v2/bot/message/push", {"to": to, "messages": messages}, retry_key=retry_key)

    def multicast(self, to: list[str], messages: list[dict], retry_key: str) -> SendResult:
        """The same messages to at most 500 users in one request (LINE counts one message per recipient)."""
        return self._send_messages("/v2/bot/message/multicast", {"to": to, "messages": messages}, retry_key=retry_key)

    def _send_messages(self, path: str, request: dict, *, retry_key: str | None = None) -> SendResult:
        """POST a message request as JSON through the SDK's REST layer (same pool, auth, time-outs, errors).

        The SDK's typed calls would turn the rendered dicts into pydantic models and back
        (from_dict, to_dict, sanitize_for_serialization) on every call, most of a call's own CPU
        (about 5 % of the inbox worker's per event, measured without a profiler). LINE checks the
        JSON itself, as the fake LINE does against LINE's OpenAPI specs in the tests.
        """
        client = self._api_client
        headers = {
            **client.default_headers,
            "Content-Type": "application/json",
            "Authorization": f"Bearer {client.configuration.access_token}",
        }
        if retry_key:
            headers["X-Line-Retry-Key"] = retry_key
        url = f"{client.configuration.host}{path}"
        try:
            response = client.request("POST", url, headers=headers, body=request, _request_timeout=_timeout())
        except ApiException as error:
            return _from_exception(error)
        except (urllib3.exceptions.HTTPError, OSError) as error:
            return _network_failure(error)
        return SendResult(status=response.status, request_id=_header(response.getheaders(), "x-line-request-id"))

    def quota(self) -> Quota:
        """This month's limit and consumption (two calls; the first failure is the result)."""
        result, limit = self._call(self.messaging.get_message_quota_with_http_info)
        if not result.ok:
            return Quota(result=result)
        if limit.data.type != "limited":
            return Quota(result=result)
        result, consumption = self._call(self.messaging.get_message_quota_consumption_with_http_info)
        if not result.ok:
            return Quota(result=result)
        return Quota(result=result, limit=int(limit.data.value or 0), used=int(consumption.data.total_usage))

    def profile(self, user_id: str) -> Profile:
        """The user's display name and picture URL (both may be empty: LINE omits what the user did not set)."""
        result, response = self._call(self.messaging.get_profile_with_http_info, user_id)
        if not result.ok:
            return Profile(result=result)
        data = response.data
        return Profile(result=result, display_name=data.display_name or "", picture_url=data.picture_url or "")

    def message_content(self, message_id: str, *, max_bytes: int) -> Content:
        """The content (image, file) of a message the resident sent, from the data host."""
        return self._blob_content(f"/v2/bot/message/{quote(str(message_id), safe='')}/content", max_bytes)

    def rich_menu_image(self, rich_menu_id: str, *, max_bytes: int) -> Content:
        """A rich menu's image, from the data host (the resident simulator shows it under the chat)."""
        return self._blob_content(f"/v2/bot/richmenu/{quote(str(rich_menu_id), safe='')}/content", max_bytes)

    def _blob_content(self, path: str, max_bytes: int) -> Content:
        """GET from the data host, streamed: never more than `max_bytes` + 1 bytes are read (see `read_capped`).

        The SDK's get_*_content calls cannot do this: even with `_preload_content=False` their call_api
        ends with `response.data`, which reads the whole body. So the request goes through the SDK's
        REST layer (same pool, TLS, time-outs, headers and error mapping) and is read here.
        """
        client = self._blob_client
        url = f"{client.configuration.host}{path}"
        headers = {**client.default_headers, "Accept": "*/*"}
        try:
            response = client.request("GET", url, headers=headers, _preload_content=False, _request_timeout=_timeout())
        except ApiException as error:
            return Content(result=_from_exception(error))
        except (urllib3.exceptions.HTTPError, OSError) as error:
            return Content(result=_network_failure(error))
        result = SendResult(status=response.status, request_id=_header(response.headers, "x-line-request-id"))
        try:
            data, too_large = read_capped(response, max_bytes)
        except (urllib3.exceptions.HTTPError, OSError) as error:
            return Content(result=_network_failure(error))
        finally:
            # A body not read to its end must not go back to the pool: close the connection.
            response.close()
            response.release_conn()
        content_type = _header(response.headers, "content-type").split(";", 1)[0].strip().lower()
        declared = _content_length(response.headers)
        size = declared if declared is not None and declared > max_bytes else len(data)
        return Content(result=result, data=data, content_type=content_type, too_large=too_large, size=size)

    def rich_menu_of_user(self, user_id: str) -> RichMenuId:
        """The menu linked to this user; `result.status` 404: none (they see the default menu)."""
        result, response = self._call(self.messaging.get_rich_menu_id_of_user_with_http_info, user_id)
        return RichMenuId(result=result, rich_menu_id=response.data.rich_menu_id if result.ok else "")

    def rich_menu_default(self) -> RichMenuId:
        """The default menu; `result.status` 404: none is set."""
        result, response = self._call(self.messaging.get_default_rich_menu_id_with_http_info)
        return RichMenuId(result=result, rich_menu_id=response.data.rich_menu_id if result.ok else "")

    def rich_menu(self, rich_menu_id: str) -> tuple[SendResult, dict]:
        """The rich menu object as LINE keeps it (size, chatBarText, areas with their actions)."""
        result, response = self._call(self.messaging.get_rich_menu_with_http_info, rich_menu_id)
        return result, (response.data.to_dict() if result.ok else {})

    def rich_menu_ids(self) -> tuple[SendResult, list[str]]:
        """The ids of every rich menu this channel made through the Messaging API (not the OA Manager's)."""
        result, response = self._call(self.messaging.get_rich_menu_list_with_http_info)
        return result, ([menu.rich_menu_id for menu in response.data.richmenus] if result.ok else [])

    def rich_menu_alias_targets(self) -> tuple[SendResult, dict[str, str]]:
        """Every alias of this channel and the rich menu it points at ({alias id: rich menu id})."""
        result, response = self._call(self.messaging.get_rich_menu_alias_list_with_http_info)
        if not result.ok:
            return result, {}
        return result, {alias.rich_menu_alias_id: alias.rich_menu_id for alias in response.data.aliases}

    def rich_menu_validate(self, menu: dict) -> SendResult:
        result, _response = self._call(
            self.messaging.validate_rich_menu_object_with_http_info, RichMenuRequest.from_dict(menu)
        )
        return result

    def rich_menu_create(self, menu: dict) -> RichMenuId:
        result, response = self._call(self.messaging.create_rich_menu_with_http_info, RichMenuRequest.from_dict(menu))
        return RichMenuId(result=result, rich_menu_id=response.data.rich_menu_id if result.ok else "")

    def rich_menu_image_set(self, rich_menu_id: str, data: bytes, content_type: str) -> SendResult:
        """Upload the menu's image (JPEG or PNG, at most 1 MB) to the data host; LINE accepts it once per menu."""
        result, _response = self._call(
            self.blob.set_rich_menu_image_with_http_info,
            rich_menu_id,
            bytes(data),
            _headers={"Content-Type": content_type},
        )
        return result

    def rich_menu_delete(self, rich_menu_id: str) -> SendResult:
        result, _response = self._call(self.messaging.delete_rich_menu_with_http_info, rich_menu_id)
        return result

    def rich_menu_alias(self, alias_id: str) -> RichMenuId:
        """The rich menu the alias points at; `result.status` 404: no such alias."""
        result, response = self._call(self.messaging.get_rich_menu_alias_with_http_info, alias_id)
        return RichMenuId(result=result, rich_menu_id=response.data.rich_menu_id if result.ok else "")

    def rich_menu_alias_create(self, alias_id: str, rich_menu_id: str) -> SendResult:
        request = CreateRichMenuAliasRequest(rich_menu_alias_id=alias_id, rich_menu_id=rich_menu_id)
        result, _response = self._call(self.messaging.create_rich_menu_alias_with_http_info, request)
        return result

    def rich_menu_alias_update(self, alias_id: str, rich_menu_id: str) -> SendResult:
        request = UpdateRichMenuAliasRequest(rich_menu_id=rich_menu_id)
        result, _response = self._call(self.messaging.update_rich_menu_alias_with_http_info, alias_id, request)
        return result

    def rich_menu_alias_delete(self, alias_id: str) -> SendResult:
        result, _response = self._call(self.messaging.delete_rich_menu_alias_with_http_info, alias_id)
        return result

    def rich_menu_default_set(self, rich_menu_id: str) -> SendResult:
        result, _response = self._call(self.messaging.set_default_rich_menu_with_http_info, rich_menu_id)
        return result

    def rich_menu_default_cancel(self) -> SendResult:
        result, _response = self._call(self.messaging.cancel_default_rich_menu_with_http_info)
        return result

    def rich_menu_link_users(self, rich_menu_id: str, user_ids: list[str]) -> SendResult:
        """Show this menu to at most 500 users (it replaces the default menu for them)."""
        request = RichMenuBulkLinkRequest(rich_menu_id=rich_menu_id, user_ids=list(user_ids))
        result, _response = self._call(self.messaging.link_rich_menu_id_to_users_with_http_info, request)
        return result

    def rich_menu_unlink_users(self, user_ids: list[str]) -> SendResult:
        """Back to the default menu for at most 500 users."""
        request = RichMenuBulkUnlinkRequest(user_ids=list(user_ids))
        result, _response = self._call(self.messaging.unlink_rich_menu_id_from_users_with_http_info, request)
        return result


SHARED_CLIENTS_KEPT = 4  # per process; more only when settings change (tests pointing at fake LINEs)
_shared_lock = threading.Lock()
_shared_clients: dict[tuple[int, str, str, str], LineClient] = {}


def shared_client() -> LineClient:
    """This process's client for the current LINE settings, kept with its connections (keep-alive).

    A client per task meant a new TCP connection per call, and against api.line.me a TLS handshake
    too (bench/README.md). Created lazily per process: the qcluster forks, and connections inherited
    from the parent must never be used by the child (its entries are dropped, not closed: the
    sockets are the parent's). Keyed by the hosts and the token, so a settings change gets a client
    of its own. Not to be closed by the caller; the oldest is closed when more are kept than
    SHARED_CLIENTS_KEPT. Thread-safe: urllib3 pools are.
    """
    key = (os.getpid(), settings.LINE_API_BASE_URL, settings.LINE_API_DATA_BASE_URL, settings.LINE_CHANNEL_ACCESS_TOKEN)
    with _shared_lock:
        client = _shared_clients.get(key)
        if client is not None:
            return client
        if any(other[0] != key[0] for other in _shared_clients):
            _shared_clients.clear()  # forked: the parent's connections are not ours to use or close
        while len(_shared_clients) >= SHARED_CLIENTS_KEPT:
            _shared_clients.pop(next(iter(_shared_clients))).close()
        client = _shared_clients[key] = LineClient()
        return client
