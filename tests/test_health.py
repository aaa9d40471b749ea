"""/healthz: what the container healthcheck and a load balancer call."""

import pytest
from django.db import OperationalError
from django.urls import reverse

from govtech import health as health_module
from govtech.health import probe_host


@pytest.mark.django_db
def test_healthz_is_ok_when_the_database_answers(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]
    assert reverse("healthz") == "/healthz"


@pytest.mark.django_db
def test_healthz_answers_head(client):
    assert client.head("/healthz").status_code == 200


@pytest.mark.django_db
def test_healthz_refuses_post(client):
    assert client.post("/healthz").status_code == 405


def test_healthz_is_503_when_the_database_is_down(client, monkeypatch):
    class DownConnection:
        def cursor(self):
            raise OperationalError("connection refused")

    monkeypatch.setattr(health_module, "connection", DownConnection())
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable"}


@pytest.mark.parametrize(
    ("allowed", "expected"),
    [
        ("city.example.jp", "city.example.jp"),
        (" *, .example.jp", "example.jp"),
        ("", "localhost"),
        ("*", "localhost"),
    ],
)
def test_the_probe_sends_a_host_that_allowed_hosts_accepts(allowed, expected):
    assert probe_host(allowed) == expected


def test_the_probe_cli_rejects_an_unknown_target(capsys):
    assert health_module.main(["nope"]) == 2
    assert "usage" in capsys.readouterr().err

