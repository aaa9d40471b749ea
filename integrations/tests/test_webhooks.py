"""Outgoing webhooks against a real local HTTP server: signatures, retries, failures, crashed senders."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import time_machine
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from audit import actions
from audit.models import AuditEntry
from integrations import services
from integrations.models import Event, WebhookDelivery, WebhookEndpoint
from procedures.engine.types import Submit
from procedures.services import application_submit
from procedures.tests.factories import DepartmentFactory, StaffUserFactory, published_version
from procedures.workflow import application_status_change

pytestmark = pytest.mark.django_db
SECRET = "back-office-secret"


class Receiver:
    """A back office on 127.0.0.1: answers with the queued codes (then 200); "hang" never answers in time."""

    def __init__(self):
        self.requests: list[dict] = []
        self.replies: list = []
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append({"headers": dict(self.headers), "body": body})
                reply = receiver.replies.pop(0) if receiver.replies else 200
                if reply == "hang":
                    receiver.release.wait(5)
                    return
                self.send_response(reply)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    running = Receiver()
    yield running
    running.close()


@pytest.fixture
def version():
    return published_version(department=DepartmentFactory(code="kankyo"), receipt_prefix="SODAI", name="粗大ごみ")


@pytest.fixture
def endpoint(version, receiver):
    return WebhookEndpoint.objects.create(procedure=version.procedure, name="電子申請", url=receiver.url, secret=SECRET)


def _submit(version, *, is_test=False, key="s1"):
    submit = Submit(
        procedure_id=version.procedure_id, version_id=version.pk, submission_key=key,
        answers={"item": "tansu", "count": 2, "name": "市役所 太郎"}, computed={},
    )
    return application_submit(submit=submit, line_user_id="U" + "0" * 32, is_test=is_test)


def _send():
    return services.deliveries_send()


def _signed(request) -> bool:
    expected = "sha256=" + hmac.new(SECRET.encode(), request["body"], hashlib.sha256).hexdigest()
    return hmac.compare_digest(request["headers"]["X-Govtech-Signature"], expected)


def test_submission_is_posted_signed_with_its_answers_but_not_sensitive_ones(endpoint, receiver, version):
    application = _submit(version)
    run = _send()
    assert run.delivered == 1
    request = receiver.requests[0]
    assert _signed(request)
    assert request["headers"]["X-Govtech-Event"] == "application.submitted"
    payload = json.loads(request["body"])
    assert payload["application"]["receipt_number"] == application.receipt_number
    assert payload["application"]["status"]["code"] == "received"
    assert payload["application"]["answers"] == {"item": "tansu", "count": 2}
    delivery = WebhookDelivery.objects.get()
    assert request["headers"]["X-Govtech-Delivery"] == str(delivery.delivery_id)
    assert delivery.status == WebhookDelivery.Status.DELIVERED
    assert list(delivery.attempt_log.values_list("status_code", flat=True)) == [200]


def test_an_endpoint_allowed_sensitive_answers_gets_them(endpoint, receiver, version):
    endpoint.include_sensitive = True
    endpoint.save()
    _submit(version)
    _send()
    assert json.loads(receiver.requests[0]["body"])["application"]["answers"]["name"] == "市役所 太郎"


def test_status_change_is_posted_with_from_and_to(endpoint, receiver, version):
    application = _submit(version)
    application_status_change(application=application, to_status=application.procedure.statuses.get(code="reviewing"),
                              actor=StaffUserFactory())
    _send()
    payloads = [json.loads(request["body"]) for request in receiver.requests]
    change = next(p for p in payloads if p["event"] == Event.STATUS_CHANGED)
    assert (change["status_change"]["from"]["code"], change["status_change"]["to"]["code"]) == ("received", "reviewing")


def test_test_applications_and_unwanted_events_are_not_sent(endpoint, version):
    endpoint.on_submitted = False
    endpoint.save()
    _submit(version)
    _submit(version, is_test=True, key="s2")
    assert not WebhookDelivery.objects.exists()


def test_a_500_is_retried_after_a_backoff_and_then_delivered_with_the_same_delivery_id(endpoint, receiver, version):
    receiver.replies = [500]
    _submit(version)
    assert _send().retrying == 1
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == WebhookDelivery.Status.PENDING and delivery.last_error == "HTTP 500"
    assert _send().delivered == 0  # not due yet
    with time_machine.travel(timezone.now() + timedelta(seconds=services.BACKOFF_BASE_SECONDS + 1), tick=False):
        assert _send().delivered == 1
    ids = {request["headers"]["X-Govtech-Delivery"] for request in receiver.requests}
    assert ids == {str(delivery.delivery_id)} and len(receiver.requests) == 2
    assert receiver.requests[0]["body"] == receiver.requests[1]["body"]
    assert list(delivery.attempt_log.values_list("status_code", flat=True)) == [500, 200]


def test_a_timeout_is_logged_and_retried(endpoint, receiver, version, settings):
    settings.WEBHOOK_TIMEOUT_SECONDS = 0.3
    receiver.replies = ["hang"]
    _submit(version)
    assert _send().retrying == 1
    attempt = WebhookDelivery.objects.get().attempt_log.get()
    assert attempt.status_code is None and attempt.error == "timeout" and attempt.duration_ms >= 250


def test_a_4xx_fails_at_once_and_staff_can_resend_it(endpoint, receiver, version):
    receiver.replies = [404]
    _submit(version)
    assert _send().failed == 1
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == WebhookDelivery.Status.FAILED and delivery.last_error == "HTTP 404"
    staff = StaffUserFactory()
    assert services.delivery_resend(delivery=delivery, actor=staff)
    assert _send().delivered == 1
    assert receiver.requests[0]["headers"]["X-Govtech-Delivery"] == receiver.requests[1]["headers"]["X-Govtech-Delivery"]
    assert AuditEntry.objects.filter(action=actions.WEBHOOK_RESEND).exists()


def test_retries_give_up_after_the_last_attempt(endpoint, receiver, version, settings):
    settings.WEBHOOK_MAX_ATTEMPTS = 2
    receiver.replies = [503, 503]
    _submit(version)
    _send()
    with time_machine.travel(timezone.now() + timedelta(hours=2), tick=False):
        assert _send().failed == 1
    assert WebhookDelivery.objects.get().status == WebhookDelivery.Status.FAILED


def test_a_sender_that_died_mid_post_leaves_the_row_to_be_sent_again(endpoint, receiver, version):
    _submit(version)
    services.deliveries_claim(now=timezone.now())  # claimed, then the process died before any result
    assert _send().delivered == 0  # the lease still holds
    with time_machine.travel(timezone.now() + services.LEASE + timedelta(seconds=1), tick=False):
        assert _send().delivered == 1
    assert WebhookDelivery.objects.get().attempts == 2


def test_a_claim_whose_transaction_rolled_back_is_picked_up_again(endpoint, receiver, version):
    _submit(version)
    with pytest.raises(RuntimeError), transaction.atomic():
        assert services.deliveries_claim(now=timezone.now())
        raise RuntimeError("worker crashed")
    assert WebhookDelivery.objects.get().status == WebhookDelivery.Status.PENDING
    assert _send().delivered == 1


def test_delivery_log_is_in_the_admin_without_the_payload(endpoint, receiver, version, admin_client):
    _submit(version)
    _send()
    delivery = WebhookDelivery.objects.get()
    page = admin_client.get(reverse("admin:integrations_webhookdelivery_change", args=[delivery.pk])).content.decode()
    assert str(delivery.delivery_id) in page and "市役所 太郎" not in page and "tansu" not in page


def test_endpoint_url_must_be_http_or_https(version, admin_client):
    response = admin_client.post(reverse("admin:integrations_webhookendpoint_add"), {
        "procedure": version.procedure_id, "name": "x", "url": "ftp://example.jp/", "secret": "s",
        "is_active": "on", "on_submitted": "on",
    })
    assert response.status_code == 200 and "有効なURL" in response.content.decode().replace(" ", "")
    assert not WebhookEndpoint.objects.exists()
