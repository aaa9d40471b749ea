"""Database-level protection of the audit log: the triggers (created by migration 0002) and their SQLite helper.

PostgreSQL: a row trigger raises on every UPDATE or DELETE of audit_auditentry.

SQLite: a trigger aborts every UPDATE; the DELETE trigger aborts unless the SQL function
audit_flush_in_progress() returns 1. That function exists only on connections Django opens (it is
registered here), so any other client fails closed, and it returns 1 only while the test suite's
database flush (TransactionTestCase teardown, `DELETE FROM "audit_auditentry";` issued by Django's
execute_sql_flush) runs with settings.TESTING on. PostgreSQL flushes with TRUNCATE, which row
triggers do not see; in a deployment the application role should not hold TRUNCATE on this table.

A migration that rebuilds the table on SQLite (Django does that for most ALTERs) drops its
triggers: call create_triggers() again at the end of such a migration. audit/tests checks that
the triggers exist after all migrations.
"""

from __future__ import annotations

import contextvars
import sys

from django.conf import settings
from django.db.backends.signals import connection_created

TABLE = "audit_auditentry"
MESSAGE = "audit_auditentry is append-only"

POSTGRESQL_CREATE = [
    f"""
    CREATE OR REPLACE FUNCTION audit_auditentry_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '{MESSAGE}: % refused', TG_OP;
    END;
    $$;
    """,
    f"DROP TRIGGER IF EXISTS audit_auditentry_append_only ON {TABLE};",
    f"""
    CREATE TRIGGER audit_auditentry_append_only BEFORE UPDATE OR DELETE ON {TABLE}
    FOR EACH ROW EXECUTE FUNCTION audit_auditentry_append_only();
    """,
]
POSTGRESQL_DROP = [
    f"DROP TRIGGER IF EXISTS audit_auditentry_append_only ON {TABLE};",
    "DROP FUNCTION IF EXISTS audit_auditentry_append_only();",
]

SQLITE_CREATE = [
    "DROP TRIGGER IF EXISTS audit_auditentry_no_update;",
    "DROP TRIGGER IF EXISTS audit_auditentry_no_delete;",
    f"""
    CREATE TRIGGER audit_auditentry_no_update BEFORE UPDATE ON {TABLE}
    BEGIN SELECT RAISE(ABORT, '{MESSAGE}: UPDATE refused'); END;
    """,
    f"""
    CREATE TRIGGER audit_auditentry_no_delete BEFORE DELETE ON {TABLE}
    WHEN audit_flush_in_progress() = 0
    BEGIN SELECT RAISE(ABORT, '{MESSAGE}: DELETE refused'); END;
    """,
]
SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS audit_auditentry_no_update;",
    "DROP TRIGGER IF EXISTS audit_auditentry_no_delete;",
]

TRIGGER_NAMES = {
    "postgresql": {"audit_auditentry_append_only"},
    "sqlite": {"audit_auditentry_no_update", "audit_auditentry_no_delete"},
}


def create_triggers(connection) -> None:
    statements = {"postgresql": POSTGRESQL_CREATE, "sqlite": SQLITE_CREATE}.get(connection.vendor, [])
    with connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)


def drop_triggers(connection) -> None:
    statements = {"postgresql": POSTGRESQL_DROP, "sqlite": SQLITE_DROP}.get(connection.vendor, [])
    with connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)


def installed_triggers(connection) -> set[str]:
    """Names of the append-only triggers present on the audit table."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal", [TABLE]
            )
        elif connection.vendor == "sqlite":
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s", [TABLE])
        else:
            return set()
        return {row[0] for row in cursor.fetchall()} & TRIGGER_NAMES[connection.vendor]


# -- SQLite: the function the DELETE trigger asks, and the test suite's flush --------------------

_flushing = contextvars.ContextVar("audit_flushing", default=False)


def _flush_in_progress() -> int:
    return 1 if _flushing.get() else 0


def _called_by_django_flush() -> bool:
    frame = sys._getframe(2)
    while frame is not None:
        code = frame.f_code
        if code.co_name == "execute_sql_flush" and "django" in code.co_filename:
            return True
        frame = frame.f_back
    return False


def _is_whole_table_delete(sql: str) -> bool:
    words = sql.replace('"', " ").replace(";", " ").split()
    return [word.upper() for word in words[:2]] == ["DELETE", "FROM"] and words[2:] == [TABLE]


def _test_flush_wrapper(execute, sql, params, many, context):
    if isinstance(sql, str) and _is_whole_table_delete(sql) and _called_by_django_flush():
        token = _flushing.set(True)
        try:
            return execute(sql, params, many, context)
        finally:
            _flushing.reset(token)
    return execute(sql, params, many, context)


def _on_connection_created(sender, connection, **kwargs):
    if connection.vendor != "sqlite":
        return
    connection.connection.create_function("audit_flush_in_progress", 0, _flush_in_progress)
    if getattr(settings, "TESTING", False) and _test_flush_wrapper not in connection.execute_wrappers:
        connection.execute_wrappers.append(_test_flush_wrapper)


def connect() -> None:
    connection_created.connect(_on_connection_created, dispatch_uid="audit.db.sqlite_functions")
