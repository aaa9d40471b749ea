import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from procedures.tests.factories import ApplicationFactory, DepartmentFactory, StaffUserFactory, published_version
from staff.models import Role, StaffMembership


def token_client(user) -> APIClient:
    client = APIClient()
    token, _created = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def member(role: str, department=None, **fields):
    user = StaffUserFactory(is_superuser=False, **fields)
    StaffMembership.objects.create(user=user, role=role, department=department)
    return user


@pytest.fixture
def department():
    return DepartmentFactory(name="環境課", code="kankyo")


@pytest.fixture
def version(department):
    return published_version(department=department, name="粗大ごみ", receipt_prefix="SODAI")


@pytest.fixture
def application(version):
    return ApplicationFactory(
        version=version, receipt_number="SODAI-2026-000001", answers={"item": "tansu", "count": 2, "name": "市役所 太郎"}
    )


@pytest.fixture
def staff(department):
    return member(Role.DEPARTMENT_STAFF, department, username="kankyo-staff")


@pytest.fixture
def viewer(department):
    return member(Role.DEPARTMENT_VIEWER, department, username="kankyo-viewer")
