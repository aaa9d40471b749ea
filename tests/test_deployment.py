"""The deployment files hang together: services, healthchecks, volumes, environment."""

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent

# What the web and the worker containers must be given (see govtech/settings.py).
REQUIRED = [
    "DATABASE_URL",
    "REDIS_URL",
    "DJANGO_SECRET_KEY",
    "DJANGO_ALLOWED_HOSTS",
    "DJANGO_CSRF_TRUSTED_ORIGINS",
    "DJANGO_BEHIND_PROXY",
    "LINE_CHANNEL_SECRET",
    "LINE_CHANNEL_ACCESS_TOKEN",
    "LINE_API_BASE_URL",
    "LINE_API_DATA_BASE_URL",
]
# Secrets compose must refuse to start without.
REQUIRED_SECRETS = [
    "DJANGO_SECRET_KEY", "GOVTECH_ENCRYPTION_KEYS", "POSTGRES_PASSWORD", "LINE_CHANNEL_SECRET", "LINE_CHANNEL_ACCESS_TOKEN",
]


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def services(compose):
    return compose["services"]


def command_text(service) -> str:
    command = service.get("command", "")
    return " ".join(command) if isinstance(command, list) else command


def environment(service) -> dict:
    env = service.get("environment", {})
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return env


def test_the_four_services_exist(services):
    assert {"web", "worker", "db", "redis"} <= set(services)


@pytest.mark.parametrize("name", ["web", "worker", "db", "redis"])
def test_every_service_has_a_healthcheck(services, name):
    healthcheck = services[name].get("healthcheck")
    assert healthcheck, f"{name} has no healthcheck"
    assert healthcheck.get("test"), f"{name}'s healthcheck has no test"
    assert not healthcheck.get("disable", False)


def test_web_healthcheck_calls_healthz(services):
    test = " ".join(services["web"]["healthcheck"]["test"])
    probe = (ROOT / "govtech" / "health.py").read_text(encoding="utf-8")
    assert "govtech.health web" in test or "/healthz" in test
    assert "/healthz" in probe


def test_db_healthcheck_uses_pg_isready(services):
    assert "pg_isready" in " ".join(services["db"]["healthcheck"]["test"])


def test_db_is_postgres_16_with_a_named_volume(compose, services):
    db = services["db"]
    assert db["image"] == "postgres:16"
    volume_names = {entry.split(":", 1)[0] for entry in db["volumes"]}
    assert any(entry.endswith(":/var/lib/postgresql/data") for entry in db["volumes"])
    assert volume_names <= set(compose["volumes"])


def test_redis_is_7_with_a_volume(compose, services):
    redis = services["redis"]
    assert redis["image"].startswith("redis:7")
    assert {entry.split(":", 1)[0] for entry in redis["volumes"]} <= set(compose["volumes"])


@pytest.mark.parametrize("name", ["web", "worker"])
def test_app_services_share_the_media_volume(compose, services, name):
    assert "media" in compose["volumes"]
    assert "media:/app/media" in services[name]["volumes"]
    assert environment(services[name])["DJANGO_MEDIA_ROOT"] == "/app/media"


@pytest.mark.parametrize("name", ["web", "worker"])
def test_app_services_get_every_required_variable(services, name):
    env = environment(services[name])
    missing = [variable for variable in REQUIRED if variable not in env]
    assert not missing, f"{name} lacks {missing}"


@pytest.mark.parametrize("name", ["web", "worker"])
def test_app_services_wait_for_healthy_db_and_redis(services, name):
    depends_on = services[name]["depends_on"]
    for dependency in ("db", "redis"):
        assert depends_on[dependency]["condition"] == "service_healthy"


def test_required_secrets_fail_loudly_when_missing():
    text = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    for secret in REQUIRED_SECRETS:
        assert re.search(r"\$\{" + secret + r":\?[^}]+\}", text), f"{secret} is not required with ${{{secret}:?...}}"


def test_no_secret_value_is_written_in_compose(services):
    for name in ("web", "worker", "db"):
        for key, value in environment(services[name]).items():
            if any(word in key for word in ("SECRET", "TOKEN", "PASSWORD")):
                assert str(value).startswith("${"), f"{name}.{key} has a literal value"


def test_commands(services):
    web = command_text(services["web"])
    assert "gunicorn govtech.wsgi" in web
    assert "migrate" in web and "collectstatic" in web
    assert web.index("migrate") < web.index("gunicorn")
    assert "qcluster" in command_text(services["worker"])


def test_dockerfile_uses_python_311_and_a_non_root_user():
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11(-slim)?\b", dockerfile, re.MULTILINE)
    assert "pip install" in dockerfile and "-r requirements.txt" in dockerfile
    assert "collectstatic" in dockerfile
    users = re.findall(r"^USER\s+(\S+)", dockerfile, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")


def test_env_example_documents_every_variable_compose_reads():
    compose_text = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", example, re.MULTILINE))
    interpolated = set(re.findall(r"(?<!\$)\$\{([A-Z][A-Z0-9_]+)", compose_text))
    assert not interpolated - documented, f"undocumented in .env.example: {sorted(interpolated - documented)}"


def test_env_example_documents_every_setting_read_from_the_environment():
    settings_text = (ROOT / "govtech" / "settings.py").read_text(encoding="utf-8")
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    read = set(re.findall(r'env_(?:str|bool|int|list)\("([A-Z][A-Z0-9_]+)"', settings_text))
    undocumented = sorted(name for name in read if name not in example)
    assert not undocumented, f"undocumented in .env.example: {undocumented}"


def test_dockerignore_keeps_local_state_and_secrets_out():
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    for entry in (".git", ".venv", "var", ".env"):
        assert entry in ignored


def test_the_access_log_keeps_no_query_string_or_referer_where_staff_search_residents_by_name(services):
    from datetime import timedelta
    from types import SimpleNamespace

    from gunicorn.config import Config
    from gunicorn.glogging import Logger

    from govtech import gunicorn_conf

    assert "--config python:govtech.gunicorn_conf" in command_text(services["web"])
    assert '"--config", "python:govtech.gunicorn_conf"' in (ROOT / "Dockerfile").read_text(encoding="utf-8")
    config = Config()
    config.set("accesslog", gunicorn_conf.accesslog)
    config.set("access_log_format", gunicorn_conf.access_log_format)
    environ = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": "/admin/residents/resident/?q=山田花子",
        "PATH_INFO": "/admin/residents/resident/",
        "QUERY_STRING": "q=山田花子",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_REFERER": "https://city.example/admin/residents/resident/?q=山田花子",
        "REMOTE_ADDR": "10.0.0.1",
    }
    request = SimpleNamespace(headers=[("REFERER", environ["HTTP_REFERER"])])
    response = SimpleNamespace(status="200 OK", status_code=200, headers=[], sent=1234, response_length=1234)
    atoms = Logger(config).atoms(response, request, environ, timedelta(milliseconds=12))
    line = config.access_log_format % atoms
    assert "/admin/residents/resident/" in line and " 200 " in line
    assert "山田" not in line and "q=" not in line
