"""Sensitive answers revealed on request (logged), attached images through the access-checked view.

A procedure of department A asks for a photo, an ID card photo (sensitive), a name and a phone
number (sensitive) and a note. Staff of A may reveal; a viewer of A may only look; staff of B
belong elsewhere.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import Client
from django.urls import reverse
from PIL import Image

from audit import actions as audit_actions
from audit.models import AuditEntry
from procedures.models import Application
from procedures.tests.factories import (
    ApplicationFactory,
    CompletionStepFactory,
    ConfirmationStepFactory,
    DepartmentFactory,
    ImageStepFactory,
    ProcedureFactory,
    ProcedureVersionFactory,
    ShortTextStepFactory,
    StaffUserFactory,
    published_version,
)
from staff.models import Role, StaffMembership

NAME = "山田花子"
PHONE = "090-1111-2222"
NOTE = "玄関前に出します"
MASK = "●●●●"
REVEAL_BUTTON = "表示する"


def png_bytes(color=(10, 120, 200)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), color).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class Setup:
    application: Application
    photo: bytes
    id_card: bytes
    clients: dict[str, Client]


def _member(username: str, role: str, department) -> Client:
    user = StaffUserFactory(username=username, is_superuser=False)
    StaffMembership.objects.create(user=user, role=role, department=department)
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def setup(db, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    department_a = DepartmentFactory(name="環境課", code="env")
    department_b = DepartmentFactory(name="福祉課", code="welfare")
    draft = ProcedureVersionFactory(procedure=ProcedureFactory(department=department_a, receipt_prefix="SODAI"))
    ImageStepFactory(version=draft, key="photo", label="品物の写真")
    ImageStepFactory(version=draft, key="id_card", label="本人確認書類", sensitive=True)
    ShortTextStepFactory(version=draft, key="name", label="お名前", sensitive=True)
    ShortTextStepFactory(version=draft, key="phone", label="電話番号", sensitive=True)
    ShortTextStepFactory(version=draft, key="note", label="メモ")
    ConfirmationStepFactory(version=draft, key="confirm")
    CompletionStepFactory(version=draft, key="done")
    version = published_version(draft)
    photo, id_card = png_bytes(), png_bytes((1, 2, 3))
    photo_ref = default_storage.save("line/images/2026/11/photo.png", ContentFile(photo))
    id_ref = default_storage.save("simulator/7/id.png", ContentFile(id_card))
    application = ApplicationFactory(
        version=version,
        receipt_number="SODAI-2026-000001",
        answers={
            "photo": {"ref": photo_ref, "content_type": "image/png", "size": len(photo)},
            "id_card": {"ref": id_ref, "content_type": "image/png", "size": len(id_card)},
            "name": NAME,
            "phone": PHONE,
            "note": NOTE,
        },
    )
    clients = {
        "staff_a": _member("staff_a", Role.DEPARTMENT_STAFF, department_a),
        "viewer_a": _member("viewer_a", Role.DEPARTMENT_VIEWER, department_a),
        "staff_b": _member("staff_b", Role.DEPARTMENT_STAFF, department_b),
        "anonymous": Client(),
    }
    return Setup(application, photo, id_card, clients)


def _change_url(application) -> str:
    return reverse("admin:procedures_application_change", args=[application.pk])


def _reveal_url(application) -> str:
    return reverse("admin:procedures_application_reveal", args=[application.pk])


def _image_url(application, key: str) -> str:
    return reverse("procedures:application_attachment", args=[application.pk, key])


def _entries(action: str):
    return AuditEntry.objects.filter(action=action)


# --------------------------------------------------------------------------
# Revealing sensitive answers
# --------------------------------------------------------------------------


def test_sensitive_answer_is_masked_until_revealed_and_masked_again_after(setup):
    client, application = setup.clients["staff_a"], setup.application
    page = client.get(_change_url(application)).content.decode()
    assert NAME not in page and PHONE not in page
    assert f"<tr><th>お名前</th><td>{MASK}</td></tr>" in page
    assert f"<tr><th>メモ</th><td>{NOTE}</td></tr>" in page
    assert REVEAL_BUTTON in page and _reveal_url(application) in page

    # One answer: only that one is shown, in this response.
    response = client.post(_reveal_url(application), {"reveal": "name"})
    assert response.status_code == 200
    assert {"private", "no-store"} <= {part.strip() for part in response["Cache-Control"].split(",")}
    html = response.content.decode()
    assert f"<tr><th>お名前</th><td>{NAME}</td></tr>" in html
    assert PHONE not in html and f"<tr><th>電話番号</th><td>{MASK}</td></tr>" in html

    # Everything at once.
    html = client.post(_reveal_url(application), {"reveal": "__all__"}).content.decode()
    assert NAME in html and PHONE in html
    assert _image_url(application, "id_card") in html

    # Nothing persists: the next GET masks again, and the reveal page is POST only.
    page = client.get(_change_url(application)).content.decode()
    assert NAME not in page and PHONE not in page
    assert client.get(_reveal_url(application)).status_code == 405


def test_reveal_needs_the_csrf_token(setup):
    client = Client(enforce_csrf_checks=True)
    client.force_login(StaffMembership.objects.get(role=Role.DEPARTMENT_STAFF, department__code="env").user)
    assert client.post(_reveal_url(setup.application), {"reveal": "name"}).status_code == 403
    assert not _entries(audit_actions.APPLICATION_REVEAL).exists()
    page = client.get(_change_url(setup.application)).content.decode()
    token = page.split('name="csrfmiddlewaretoken" value="', 1)[1].split('"', 1)[0]
    response = client.post(_reveal_url(setup.application), {"reveal": "name", "csrfmiddlewaretoken": token})
    assert response.status_code == 200 and NAME in response.content.decode()


def test_reveal_is_audit_logged_with_keys_not_values(setup):
    client, application = setup.clients["staff_a"], setup.application
    client.post(_reveal_url(application), {"reveal": ["name", "note", "nonexistent"]})
    client.post(_reveal_url(application), {"reveal": "__all__"})
    entries = list(_entries(audit_actions.APPLICATION_REVEAL).order_by("pk"))
    assert len(entries) == 2
    first, second = entries
    assert first.object_type == "procedures.application" and first.object_id == str(application.pk)
    assert first.actor.username == "staff_a"
    assert first.department_id == application.procedure.department_id
    # Only sensitive answers are revealed; a non-sensitive or unknown key is not logged as revealed.
    assert first.details["keys"] == ["name"]
    assert second.details["keys"] == ["id_card", "name", "phone"]
    for entry in entries:
        text = str(entry.details)
        assert NAME not in text and PHONE not in text and "line/images" not in text and "simulator/" not in text
    # Nothing to reveal: no entry.
    response = client.post(_reveal_url(application), {"reveal": "note"})
    assert response.status_code == 302
    assert _entries(audit_actions.APPLICATION_REVEAL).count() == 2


def test_user_without_reveal_permission_gets_no_button_and_a_forged_post_is_refused(setup):
    application = setup.application
    viewer = setup.clients["viewer_a"]
    page = viewer.get(_change_url(application))
    assert page.status_code == 200
    html = page.content.decode()
    assert REVEAL_BUTTON not in html and _reveal_url(application) not in html
    assert NAME not in html and MASK in html

    response = viewer.post(_reveal_url(application), {"reveal": "__all__"})
    assert response.status_code == 403 and NAME not in response.content.decode()
    # Another department: the application does not exist for them.
    response = setup.clients["staff_b"].post(_reveal_url(application), {"reveal": "name"})
    assert response.status_code == 404 and NAME not in response.content.decode()
    # Anonymous: the login page.
    response = setup.clients["anonymous"].post(_reveal_url(application), {"reveal": "name"})
    assert response.status_code == 302 and "/login/" in response["Location"]
    assert not _entries(audit_actions.APPLICATION_REVEAL).exists()


# --------------------------------------------------------------------------
# Attached images
# --------------------------------------------------------------------------


def test_image_answer_is_served_through_the_access_checked_view(setup):
    client, application = setup.clients["staff_a"], setup.application
    page = client.get(_change_url(application)).content.decode()
    assert _image_url(application, "photo") in page
    assert _image_url(application, "id_card") not in page  # sensitive: masked until revealed
    assert "line/images" not in page and "simulator/" not in page  # storage names are never shown

    response = client.get(_image_url(application, "photo"))
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == setup.photo
    assert response["Content-Type"] == "image/png"
    assert response["Content-Disposition"] == "inline"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Cache-Control"] == "private, no-store"

    response = setup.clients["anonymous"].get(_image_url(application, "photo"))
    assert response.status_code == 302 and "/login/" in response["Location"]
    assert client.post(_image_url(application, "photo")).status_code == 405


def test_image_of_another_department_is_404(setup):
    application = setup.application
    response = setup.clients["staff_b"].get(_image_url(application, "photo"))
    assert response.status_code == 404
    assert "見つかりません" in response.content.decode()
    assert setup.photo not in response.content
    missing = setup.clients["staff_a"].get(reverse("procedures:application_attachment", args=[999999, "photo"]))
    assert missing.status_code == 404
    assert not _entries(audit_actions.APPLICATION_IMAGE_VIEW).exists()


def test_step_key_with_path_tricks_is_404(setup, settings):
    client, application = setup.clients["staff_a"], setup.application
    (settings.MEDIA_ROOT.parent / "outside.png").write_bytes(b"outside the media root")
    base = f"/procedures/applications/{application.pk}/attachments/"
    tricks = [
        "..", ".", "../photo", "..%2Fphoto", "%2e%2e", "photo%2F..%2F..%2Foutside.png", "photo%00", "PHOTO",
        "..%5C..%5Coutside.png", "line%2Fimages%2F2026%2F11%2Fphoto.png", "nonexistent",
        "name",  # a text step, not an image step
    ]
    for key in tricks:
        response = client.get(f"{base}{key}/")
        assert response.status_code == 404, key
        assert b"outside the media root" not in response.content
    # A stored ref that leaves the image directories (a tampered answer) is not served either.
    for ref in ("../outside.png", "line/images/../../outside.png", "/etc/passwd", "media/photo.png"):
        Application.objects.filter(pk=application.pk).update(
            answers={**application.answers, "photo": {"ref": ref, "content_type": "image/png", "size": 5}}
        )
        assert client.get(_image_url(application, "photo")).status_code == 404, ref
    assert not _entries(audit_actions.APPLICATION_IMAGE_VIEW).exists()


def test_sensitive_image_needs_reveal_permission(setup):
    application = setup.application
    viewer = setup.clients["viewer_a"]
    assert viewer.get(_image_url(application, "photo")).status_code == 200
    response = viewer.get(_image_url(application, "id_card"))
    assert response.status_code == 403 and setup.id_card not in response.content
    response = setup.clients["staff_a"].get(_image_url(application, "id_card"))
    assert response.status_code == 200 and b"".join(response.streaming_content) == setup.id_card
    assert setup.clients["staff_b"].get(_image_url(application, "id_card")).status_code == 404


def test_image_view_is_audit_logged(setup):
    client, application = setup.clients["staff_a"], setup.application
    client.get(_image_url(application, "photo"))
    client.get(_image_url(application, "id_card"))
    entries = list(_entries(audit_actions.APPLICATION_IMAGE_VIEW).order_by("pk"))
    assert [(entry.details["step"], entry.details["sensitive"]) for entry in entries] == [
        ("photo", False), ("id_card", True)
    ]
    assert all(entry.object_id == str(application.pk) and entry.actor.username == "staff_a" for entry in entries)
    assert all(entry.department_id == application.procedure.department_id for entry in entries)
    assert audit_actions.label(audit_actions.APPLICATION_IMAGE_VIEW) == "添付画像の閲覧"
    assert audit_actions.label(audit_actions.APPLICATION_REVEAL) == "機微情報の表示"

    # A file that is gone: 404 in Japanese, and nothing was viewed.
    default_storage.delete(application.answers["photo"]["ref"])
    response = client.get(_image_url(application, "photo"))
    assert response.status_code == 404
    assert "画像ファイルが見つかりません" in response.content.decode()
    assert _entries(audit_actions.APPLICATION_IMAGE_VIEW).count() == 2
