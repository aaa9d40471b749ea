"""Every log record the application writes, as with LOG_LEVEL=DEBUG, for tests that look for personal data.

pytest's caplog sees only what reaches the root logger at caplog's level. This sets the root level
to DEBUG the way LOG_LEVEL does (loggers given a level of their own in settings.LOGGING keep it),
also listens to loggers that do not propagate, and renders arguments and tracebacks as a handler
would write them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class CapturedLogs:
    def __init__(self, handler: _Collect):
        self._handler = handler

    @property
    def records(self) -> list[logging.LogRecord]:
        return self._handler.records

    @property
    def text(self) -> str:
        return "\n".join(self._handler.format(record) for record in self.records)

    def assert_absent(self, *values: str) -> None:
        text = self.text
        found = [value for value in values if value in text]
        assert not found, f"personal data in the logs: {found}"


@contextmanager
def all_logs() -> Iterator[CapturedLogs]:
    handler = _Collect()
    root = logging.getLogger()
    listened = [root] + [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger) and not logger.propagate
    ]
    root_level = root.level
    for logger in listened:
        logger.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield CapturedLogs(handler)
    finally:
        root.setLevel(root_level)
        for logger in listened:
            logger.removeHandler(handler)
