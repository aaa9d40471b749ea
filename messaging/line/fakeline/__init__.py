"""Fake LINE API server (test infrastructure; reusable by a local LINE simulator).

``FakeLineServer`` serves LINE's Messaging API on two local ports (api.line.me / api-data.line.me) and
validates every request against LINE's official OpenAPI specs (``messaging.line.openapi``); pytest fixtures
live in ``messaging.line.fakeline.pytest_plugin``.
"""

from messaging.line.openapi.validation import (
    HOST_API,
    HOST_DATA,
    ErrorDetail,
    load_specs,
    schema_errors,
    sign_webhook,
    validate_webhook_body,
)

from .server import FakeLinePlatform, FakeLineServer, Response, rich_menu_image_errors
from .state import Call

__all__ = [
    "HOST_API",
    "HOST_DATA",
    "Call",
    "ErrorDetail",
    "FakeLinePlatform",
    "FakeLineServer",
    "Response",
    "load_specs",
    "rich_menu_image_errors",
    "schema_errors",
    "sign_webhook",
    "validate_webhook_body",
]
