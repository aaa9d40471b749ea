"""The segment admin: rule builder page, live count endpoint, sample of members, department scoping."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.urls import reverse

from audit.models import AuditEntry
from broadcasts.models import Broadcast
from procedures.tests.factories import (
    ApplicationFactory,
    DepartmentFactory,
    StaffUserFactory,
    published_version,
)
from residents.models import Attribute, Resident, ResidentAttributeValue, Segment
from staff.models import Role, StaffMembership

pytestmark = pytest.mark.django_db

COUNT_URL = "admin:residents_segment_count"


def _user(username, role=None, department=None, **fields):
    user = StaffUserFactory(username=username, is_superuser=fields.pop("is_superuser", False), **fields)
    if role:
        StaffMembership.objects.create(user=user, role=role, department=department)
    return user


def _client(user, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def _post_count(client, rules, **extra):
    return client.post(reverse(COUNT_URL), data=json.dumps({"rules": rules}), content_type="application/json", **extra)


@pytest.fixture
def welfare():
    return DepartmentFactory(name="福祉課", code="welfare")


@pytest.fixture
def tax():
    return DepartmentFactory(name="税務課", code="tax")


@pytest.fixture
def district():
    attribute = Attribute.objects.create(
        key="district",
        label="地区",
        kind=Attribute.Kind.SINGLE_CHOICE,
        choices=[{"value": "north", "label": "北地区"}, {"value": "south", "label": "南地区"}],
    )
    for number, value in enumerate(["north", "north", "south"]):
        resident = Resident.objects.create(line_user_id=f"U-district-{number}", display_name=f"住民{number}")
        ResidentAttributeValue.objects.create(resident=resident, attribute=attribute, value_text=value)
    return attribute


NORTH = {"match": "all", "rules": [{"type": "attribute", "attribute": "district", "op": "equals", "value": "north"}]}


@pytest.fixture
def welfare_staff(welfare):
    return _user("welfare-staff", Role.DEPARTMENT_STAFF, welfare)


# --------------------------------------------------------------------------
# The live count
# --------------------------------------------------------------------------


def test_count_endpoint_tells_department_staff_no_count_of_rules_on_profiles_and_names_nobody(
    district, welfare_staff
):
    response = _post_count(_client(welfare_staff), NORTH)

    assert response.status_code == 200
    assert response.json() == {"count": None, "count_hidden": True, "sample": None}
    # Not by difference either: "following and not in the north" is a rule on the profile too.
    following = {"type": "follow", "op": "following"}
    not_north = {"match": "all", "rules": [following, {**NORTH, "negate": True}]}
    assert _post_count(_client(welfare_staff), not_north).json()["count"] is None


def test_department_staff_get_the_exact_count_of_rules_without_profile_conditions(district, welfare, welfare_staff):
    # A resident who applied to the department's procedure: staff may open them, not their profile.
    applicant = Resident.objects.get(line_user_id="U-district-0")
    version = published_version(department=welfare)
    ApplicationFactory(version=version, resident=applicant)
    client = _client(welfare_staff)
    assert client.get(reverse("admin:residents_resident_change", args=[applicant.pk])).status_code == 200
    applied = {"match": "all", "rules": [{"type": "application", "op": "has", "procedure": version.procedure_id}]}
    assert _post_count(client, applied).json() == {"count": 1, "sample": None}
    nobody = {"match": "all", "rules": [{"type": "follow", "op": "blocked"}]}
    assert _post_count(client, nobody).json() == {"count": 0, "sample": None}  # an empty segment shows as empty


def test_the_sample_links_to_residents_the_user_may_view(district):
    admin = _user("admin", Role.SYSTEM_ADMIN)

    sample = _post_count(_client(admin), NORTH).json()["sample"]

    resident = Resident.objects.get(line_user_id="U-district-0")
    assert sample[0]["url"] == reverse("admin:residents_resident_change", args=[resident.pk])


def test_count_endpoint_answers_the_problems_of_invalid_rules(district, welfare_staff):
    rules = {"match": "all", "rules": [{"type": "attribute", "attribute": "district", "op": "equals", "value": "west"}]}

    response = _post_count(_client(welfare_staff), rules)

    assert response.status_code == 400
    assert response.json() == {"problems": ["属性「地区」に選択肢「west」はありません。"]}


def test_count_endpoint_refuses_a_body_that_is_not_rules(welfare_staff):
    response = _client(welfare_staff).post(reverse(COUNT_URL), data="{", content_type="application/json")

    assert response.status_code == 400
    assert "読み取れませんでした" in response.json()["problems"][0]


@pytest.mark.parametrize("role", [Role.DEPARTMENT_VIEWER, Role.AUDITOR, None])
def test_count_endpoint_is_refused_to_staff_who_cannot_edit_segments(district, welfare, role):
    user = _user("reader", role, welfare)

    response = _post_count(_client(user), NORTH)

    assert response.status_code == 403


def test_count_endpoint_only_takes_posts(welfare_staff):
    assert _client(welfare_staff).get(reverse(COUNT_URL)).status_code == 405


def test_count_endpoint_needs_the_csrf_token(district, welfare_staff):
    client = _client(welfare_staff, enforce_csrf_checks=True)
    client.get(reverse("admin:residents_segment_add"))
    token = client.cookies["csrftoken"].value

    assert _post_count(client, NORTH).status_code == 403
    assert _post_count(client, NORTH, HTTP_X_CSRFTOKEN=token).status_code == 200


def test_a_procedure_of_another_department_reads_as_missing(welfare_staff, tax):
    other = published_version(department=tax).procedure
    ApplicationFactory(version=other.current_version, resident=Resident.objects.create(line_user_id="U-tax"))
    rules = {"match": "all", "rules": [{"type": "application", "op": "has", "procedure": other.pk}]}

    response = _post_count(_client(welfare_staff), rules)

    assert response.status_code == 400
    assert response.json() == {"problems": [f"手続き（ID {other.pk}）が見つかりません。"]}


# --------------------------------------------------------------------------
# Pages
# --------------------------------------------------------------------------


def _editor_data(response) -> dict:
    html = response.content.decode()
    start = html.index('<script id="segment-editor-data" type="application/json">')
    start = html.index(">", start) + 1
    return json.loads(html[start : html.index("</script>", start)])


def test_add_page_embeds_the_editor_with_attributes_categories_and_only_visible_procedures(
    district, welfare, welfare_staff, tax
):
    own = published_version(department=welfare).procedure
    published_version(department=tax)

    response = _client(welfare_staff).get(reverse("admin:residents_segment_add"))

    assert response.status_code == 200
    data = _editor_data(response)
    assert data["count_url"] == reverse(COUNT_URL)
    assert data["readonly"] is False
    assert data["attributes"][0]["key"] == "district"
    assert [procedure["id"] for procedure in data["procedures"]] == [own.pk]
    assert {"code": "completed", "label": "完了"} in data["procedures"][0]["statuses"]
    assert 'name="rules"' in response.content.decode()
    assert "residents/segment_editor.js" in response.content.decode()
    # The staff member's only department is chosen for them.
    assert response.context["adminform"].form.initial["department"] == welfare.pk


def test_staff_create_a_segment_for_their_department(district, welfare, welfare_staff):
    response = _client(welfare_staff).post(
        reverse("admin:residents_segment_add"),
        {"name": "北地区の住民", "description": "", "department": welfare.pk, "rules": json.dumps(NORTH)},
    )

    assert response.status_code == 302
    segment = Segment.objects.get()
    assert (segment.department, segment.created_by, segment.rules) == (welfare, welfare_staff, NORTH)


def test_saving_invalid_rules_shows_the_problems_and_saves_nothing(district, welfare, welfare_staff):
    rules = {"match": "any", "rules": []}

    response = _client(welfare_staff).post(
        reverse("admin:residents_segment_add"),
        {"name": "空", "department": welfare.pk, "rules": json.dumps(rules)},
    )

    assert response.status_code == 200
    assert "空のグループがあります" in response.content.decode()
    assert not Segment.objects.exists()


def test_staff_cannot_create_a_city_wide_segment(district, welfare_staff):
    response = _client(welfare_staff).post(
        reverse("admin:residents_segment_add"), {"name": "全庁", "department": "", "rules": json.dumps(NORTH)}
    )

    assert response.status_code == 403
    assert not Segment.objects.exists()


def test_a_system_admin_creates_a_city_wide_segment(district):
    admin = _user("admin", Role.SYSTEM_ADMIN)

    response = _client(admin).post(
        reverse("admin:residents_segment_add"), {"name": "全庁", "department": "", "rules": json.dumps(NORTH)}
    )

    assert response.status_code == 302
    assert Segment.objects.get().department is None


def test_change_page_shows_department_staff_the_saved_count_without_a_sample(district, welfare, welfare_staff):
    segment = Segment.objects.create(name="北地区", department=welfare, rules=NORTH)

    response = _client(welfare_staff).get(reverse("admin:residents_segment_change", args=[segment.pk]))

    assert response.status_code == 200
    html = response.content.decode()
    assert "属性・受信カテゴリの条件があるため、人数は表示しません" in html
    assert "U-district-0" not in html and "住民1" not in html  # residents this staff member may not view
    assert _editor_data(response)["rules"] == NORTH


def test_change_page_names_the_problems_of_stale_saved_rules(welfare, welfare_staff):
    segment = Segment.objects.create(name="古い", department=welfare, rules=NORTH)

    response = _client(welfare_staff).get(reverse("admin:residents_segment_change", args=[segment.pk]))

    assert response.status_code == 200
    assert "属性「district」はありません。" in response.content.decode()


def test_a_viewer_sees_the_segment_read_only(district, welfare):
    viewer = _user("viewer", Role.DEPARTMENT_VIEWER, welfare)
    segment = Segment.objects.create(name="北地区", department=welfare, rules=NORTH)

    response = _client(viewer).get(reverse("admin:residents_segment_change", args=[segment.pk]))

    assert response.status_code == 200
    assert _editor_data(response)["readonly"] is True
    assert 'name="rules"' not in response.content.decode()


def test_another_departments_segment_is_not_found_by_id(district, welfare_staff, tax):
    theirs = Segment.objects.create(name="税務課の", department=tax, rules=NORTH)
    client = _client(welfare_staff)

    assert client.get(reverse("admin:residents_segment_change", args=[theirs.pk])).status_code == 404
    response = client.post(
        reverse("admin:residents_segment_change", args=[theirs.pk]),
        {"name": "乗っ取り", "department": "", "rules": json.dumps(NORTH)},
    )
    assert response.status_code in (403, 404)
    assert client.post(reverse("admin:residents_segment_delete", args=[theirs.pk]), {"post": "yes"}).status_code == 404
    assert Segment.objects.get(pk=theirs.pk).name == "税務課の"


def test_department_staff_read_a_city_wide_segment_but_cannot_change_or_delete_it(district, welfare_staff):
    city_wide = Segment.objects.create(name="全庁の", department=None, rules=NORTH)
    client = _client(welfare_staff)
    change = reverse("admin:residents_segment_change", args=[city_wide.pk])

    page = client.get(change)
    assert page.status_code == 200
    assert _editor_data(page)["readonly"] is True and "人数は表示しません" in page.content.decode()
    assert "全庁の" in client.get(reverse("admin:residents_segment_changelist")).content.decode()
    assert client.post(change, {"name": "乗っ取り", "department": "", "rules": json.dumps(NORTH)}).status_code == 403
    assert client.post(reverse("admin:residents_segment_delete", args=[city_wide.pk]), {"post": "yes"}).status_code == 403
    assert Segment.objects.get(pk=city_wide.pk).name == "全庁の"
    assert not AuditEntry.objects.filter(action__startswith="segment.").exists()


def test_the_list_shows_only_the_users_departments_segments(welfare, welfare_staff, tax):
    Segment.objects.create(name="福祉の対象", department=welfare, rules=NORTH)
    Segment.objects.create(name="税務の対象", department=tax, rules=NORTH)

    html = _client(welfare_staff).get(reverse("admin:residents_segment_changelist")).content.decode()

    assert "福祉の対象" in html and "税務の対象" not in html


def test_absurdly_deep_json_is_refused_with_a_message(welfare, welfare_staff):
    deep = "[" * 5_000 + "]" * 5_000
    client = _client(welfare_staff)

    counted = client.post(reverse(COUNT_URL), data='{"rules": ' + deep + "}", content_type="application/json")
    saved = client.post(
        reverse("admin:residents_segment_add"), {"name": "深い", "department": welfare.pk, "rules": deep}
    )

    assert counted.status_code == 400
    assert saved.status_code == 200 and not Segment.objects.exists()


# --------------------------------------------------------------------------
# Audit log
# --------------------------------------------------------------------------


def _segment_entries():
    return list(AuditEntry.objects.filter(action__startswith="segment.").order_by("pk"))


def test_creating_changing_and_deleting_a_segment_is_audit_logged(district, welfare, welfare_staff):
    client = _client(welfare_staff)
    client.post(
        reverse("admin:residents_segment_add"),
        {"name": "北地区", "description": "", "department": welfare.pk, "rules": json.dumps(NORTH)},
    )
    segment = Segment.objects.get()
    south = {"match": "all", "rules": [{**NORTH["rules"][0], "value": "south"}]}
    change = reverse("admin:residents_segment_change", args=[segment.pk])
    values = {"name": "南地区", "description": "", "department": welfare.pk}
    assert client.post(change, {**values, "rules": json.dumps(south)}).status_code == 302
    assert client.post(change, {**values, "rules": json.dumps(south)}).status_code == 302  # nothing changed
    assert client.post(reverse("admin:residents_segment_delete", args=[segment.pk]), {"post": "yes"}).status_code == 302

    entries = _segment_entries()
    assert [entry.action for entry in entries] == ["segment.create", "segment.change", "segment.delete"]
    assert {(entry.actor, entry.department, entry.object_id) for entry in entries} == {
        (welfare_staff, welfare, str(segment.pk))
    }
    assert entries[1].details == {"name": "南地区", "fields": ["name", "rules"]}
    assert entries[2].details == {"name": "南地区"}
    assert not Segment.objects.exists()


def test_a_segment_moved_to_another_department_is_logged_in_both(district, welfare, tax):
    admin = _user("admin", Role.SYSTEM_ADMIN)
    segment = Segment.objects.create(name="北地区", department=welfare, rules=NORTH)

    response = _client(admin).post(
        reverse("admin:residents_segment_change", args=[segment.pk]),
        {"name": "北地区", "description": "", "department": tax.pk, "rules": json.dumps(NORTH)},
    )

    assert response.status_code == 302
    entries = _segment_entries()
    assert sorted(entry.department.code for entry in entries) == ["tax", "welfare"]
    assert {entry.action for entry in entries} == {"segment.change"}
    assert entries[0].details == {"name": "北地区", "fields": ["department"], "previous_department_id": welfare.pk}


def test_deleting_segments_in_bulk_logs_each(district, welfare, welfare_staff):
    segments = [Segment.objects.create(name=name, department=welfare, rules=NORTH) for name in ("一", "二")]

    response = _client(welfare_staff).post(
        reverse("admin:residents_segment_changelist"),
        {"action": "delete_selected", "_selected_action": [s.pk for s in segments], "post": "yes"},
    )

    assert response.status_code == 302
    assert not Segment.objects.exists()
    assert sorted(entry.details["name"] for entry in _segment_entries()) == ["一", "二"]


def test_a_segment_a_broadcast_uses_is_not_deleted_and_nothing_is_logged(district, welfare, welfare_staff):
    segment = Segment.objects.create(name="北地区", department=welfare, rules=NORTH)
    Broadcast.objects.create(title="北地区のお知らせ", department=welfare, audience="segment", segment=segment)

    response = _client(welfare_staff).post(reverse("admin:residents_segment_delete", args=[segment.pk]), {"post": "yes"})

    assert response.status_code == 200  # Django's page naming the protected broadcast
    assert Segment.objects.filter(pk=segment.pk).exists()
    assert _segment_entries() == []
