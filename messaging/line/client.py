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
from dataclasses import dataclass
from urllib.parse import quote

import urllib3
from django.conf import settings
from linebot.v3.messaging import (
    ApiClient,
    ApiException,
    Configuration,
    MessagingApi,
    MessagingApiBlob,
    PushMessageRequest,
    ReplyMessageRequest,
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

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


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


def _from_exception(error: ApiException) -> SendResult:
    return SendResult(
        status=error.status or None,
        request_id=_header(error.headers, "x-line-request-id"),
        accepted_request_id=_header(error.headers, "x-line-accepted-request-id"),
        error=_line_message(error.body) or str(error.reason or ""),
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
    """Use as a context manager: `with LineClient() as line: line.push(...)`."""

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
                client.close()
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
        request = ReplyMessageRequest.from_dict({"replyToken": reply_token, "messages": messages})
        result, _response = self._call(self.messaging.reply_message_with_http_info, request)
        return result

    def push(self, to: str, messages: list[dict], retry_key: str) -> SendResult:
        request = PushMessageRequest.from_dict({"to": to, "messages": messages})
        result, _response = self._call(self.messaging.push_message_with_http_info, request, x_line_retry_key=retry_key)
        return result

    def message_content(self, message_id: str, *, max_bytes: int) -> Content:
        """The content (image, file) of a message the resident sent, from the data host.

        Streamed: never more than `max_bytes` + 1 bytes are read (see `read_capped`). The SDK's
        get_message_content* cannot do this: even with `_preload_content=False` its call_api ends
        with `response.data`, which reads the whole body. So the request goes through the SDK's
        REST layer (same pool, TLS, time-outs, headers and error mapping) and is read here.
        """
        client = self._blob_client
        url = f"{client.configuration.host}/v2/bot/message/{quote(str(message_id), safe='')}/content"
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
