"""Production settings come from the environment, and `check --deploy` is clean with them."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION = {
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": "k8#Qz!v2-production-secret-from-the-environment-9fXw7@pL0sR4tY6uB3nM",
    "DJANGO_ALLOWED_HOSTS": "umsg.example.com",
}


def manage(*args, **env):
    base = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "DATABASE_URL"))}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=60
    )


def settings_in(**env) -> dict:
    names = ["DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS",
             "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_PROXY_SSL_HEADER", "CSRF_TRUSTED_ORIGINS"]
    code = f"from django.conf import settings; import json; print(json.dumps({{n: getattr(settings, n, None) for n in {names!r}}}))"
    result = manage("shell", "-c", code, **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_check_deploy_is_clean_with_production_settings():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_fails_when_production_runs_without_its_own_secret_key():
    env = {**PRODUCTION}
    del env["DJANGO_SECRET_KEY"]
    result = manage("check", "--deploy", "--fail-level", "WARNING", **env)
    assert result.returncode != 0
    assert "security.W009" in result.stdout + result.stderr


def test_secrets_hosts_and_https_come_from_the_environment():
    production = settings_in(**PRODUCTION, DJANGO_SECURE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_PROTO",
                             DJANGO_CSRF_TRUSTED_ORIGINS="https://umsg.example.com")
    assert production["DEBUG"] is False
    assert production["SECRET_KEY"] == PRODUCTION["DJANGO_SECRET_KEY"]
    assert production["ALLOWED_HOSTS"] == ["umsg.example.com"]
    assert production["CSRF_TRUSTED_ORIGINS"] == ["https://umsg.example.com"]
    assert production["SECURE_SSL_REDIRECT"] and production["SESSION_COOKIE_SECURE"] and production["CSRF_COOKIE_SECURE"]
    assert production["SECURE_HSTS_SECONDS"] >= 31536000
    assert production["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]


def test_each_https_setting_can_be_turned_back_for_plain_http_behind_a_trusted_network():
    relaxed = settings_in(**PRODUCTION, DJANGO_SECURE_SSL_REDIRECT="0", DJANGO_SECURE_HSTS_SECONDS="0", DJANGO_SECURE_COOKIES="0")
    assert (relaxed["SECURE_SSL_REDIRECT"], relaxed["SECURE_HSTS_SECONDS"], relaxed["SESSION_COOKIE_SECURE"]) == (False, 0, False)


def test_development_defaults_need_no_https():
    development = settings_in()
    assert development["DEBUG"] is True
    assert not development["SECURE_SSL_REDIRECT"] and development["SECURE_HSTS_SECONDS"] == 0
    assert development["SECURE_PROXY_SSL_HEADER"] is None


def test_production_without_its_own_secret_key_refuses_to_start_with_a_clear_message():
    env = {**PRODUCTION}
    del env["DJANGO_SECRET_KEY"]
    for result in (
        manage("migrate", "--check", **env),
        manage("shell", "-c", "from django.conf import settings; settings.DEBUG; print('started')", **env),
    ):
        assert result.returncode != 0
        assert "started" not in result.stdout
        assert "ImproperlyConfigured" in result.stderr and "DJANGO_SECRET_KEY" in result.stderr
    base = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "DATABASE_URL"))}
    daphne = subprocess.run(  # what daphne loads first
        [sys.executable, "-c", "import unified_msg_site.asgi"], cwd=ROOT, env={**base, **env},
        capture_output=True, text=True, timeout=60,
    )
    assert daphne.returncode != 0 and "DJANGO_SECRET_KEY" in daphne.stderr


def test_the_development_defaults_still_start_with_nothing_configured():
    # `make run` runs migrate, demo_user and run_dashboard with no environment at all.
    result = manage("shell", "-c", "from django.conf import settings; settings.DEBUG; print('started')")
    assert result.returncode == 0, result.stderr
    assert "started" in result.stdout


def test_debug_pages_mask_passwords_inside_connection_urls(settings, rf):
    from django.views.debug import get_default_exception_reporter_filter

    settings.REDIS_URL = "redis://default:s3cret-redis@redis.internal:6379/0"
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                                   "LOCATION": "redis://:s3cret-cache@redis.internal:6379"}}
    settings.CHANNEL_LAYERS = {"default": {"CONFIG": {"hosts": ["redis://u:s3cret-layer@redis.internal/1"]}}}
    settings.AMQP_URL = "amqp://guest:s3cret-amqp@mq.internal:5672//"
    settings.KAFKA_CLIENT_CONFIG = {"bootstrap.servers": "k:9092", "sasl.jaas.config": 'password="s3cret-jaas"'}
    reporter_filter = get_default_exception_reporter_filter()
    shown = repr(reporter_filter.get_safe_settings())
    for secret in ("s3cret-redis", "s3cret-cache", "s3cret-layer", "s3cret-amqp", "s3cret-jaas"):
        assert secret not in shown
    assert "redis.internal:6379" in shown  # the host stays: it is what one debugs
    request = rf.get("/", HTTP_X_UPSTREAM="postgres://umsg:s3cret-meta@db:5432/umsg")
    assert "s3cret-meta" not in repr(reporter_filter.get_safe_request_meta(request))
