"""Schemathesis against the API in-process (WSGI, no network): no 5xx, answers as the schema says."""

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from schemathesis import checks
from schemathesis.specs.openapi import checks as openapi_checks

from api.tests.conftest import member, token_client
from procedures.tests.factories import ApplicationFactory, DepartmentFactory, published_version
from staff.models import Role

CHECKS = (
    checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
)


@pytest.fixture
def wsgi_keeps_the_test_connection():
    # Django's test client does the same: a real WSGI request would close the database connection
    # at its end, and with it the transaction the test runs in (PostgreSQL).
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def api_schema(db, wsgi_keeps_the_test_connection):
    department = DepartmentFactory(code="kankyo")
    version = published_version(department=department, receipt_prefix="SODAI")
    ApplicationFactory(version=version, answers={"item": "tansu", "count": 1, "name": "市役所 太郎"})
    user = member(Role.DEPARTMENT_STAFF, department, username="schemathesis")
    token = token_client(user)._credentials["HTTP_AUTHORIZATION"]
    schema = schemathesis.openapi.from_wsgi(
        "/api/v1/schema/?format=json", get_wsgi_application(), headers={"Authorization": token}
    )
    schema.config.headers = {"Authorization": token}
    return schema


# schemathesis' own pytest integration does not run under this pytest; each operation gets a
# hypothesis test of its own instead, bounded so that the whole run stays well under 30 s.
MAX_EXAMPLES = 12


@pytest.mark.django_db
def test_every_operation_conforms_to_the_schema(api_schema):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) == 5
    seen = set()
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def conforms(case):
            seen.add(case.call_and_validate(checks=CHECKS).status_code)

        conforms()
    assert 200 in seen and 400 in seen  # the token works, and bad inputs were tried
