# The city's deployment image: gunicorn for the web, the same image runs the
# django-q2 worker (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=govtech.settings \
    GOVTECH_VAR_DIR=/app/var \
    DJANGO_STATIC_ROOT=/app/static \
    DJANGO_MEDIA_ROOT=/app/media

WORKDIR /app

RUN groupadd --system --gid 10001 govtech \
    && useradd --system --uid 10001 --gid govtech --no-create-home --home-dir /app --shell /usr/sbin/nologin govtech

# Dependencies first, so a code change does not reinstall them.
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt

# The code stays root-owned (read-only for the app); only var/, static/ and
# media/ are writable by the app user.
COPY . .

# Static files are collected at build time with a throw-away key (a real key is
# only ever given at run time); the web service collects again on start.
RUN DJANGO_SECRET_KEY=build-only-collectstatic-not-a-secret python manage.py collectstatic --noinput \
    && mkdir -p /app/var /app/media \
    && chown -R govtech:govtech /app/var /app/media /app/static

USER govtech

EXPOSE 8000

CMD ["gunicorn", "govtech.wsgi:application", "--config", "python:govtech.gunicorn_conf", "--bind", "0.0.0.0:8000"]
