"""Settings resolve from the environment: embedded defaults, real services, production."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICE_VARS = ("DATABASE_URL", "REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS", "CELERY_BROKER_URL")
PROBE = """
import json, django
from django.conf import settings
django.setup()
print(json.dumps({
    "db": settings.DATABASES["default"]["ENGINE"],
    "cache": settings.CACHES["default"]["BACKEND"],
    "channels": settings.CHANNEL_LAYERS["default"]["BACKEND"],
    "broker": settings.CELERY_BROKER_URL,
    "events": settings.PHOENIX_EVENT_BACKEND,
    "features": settings.PHOENIX_FEATURE_STORE,
    "debug": settings.DEBUG,
}))
"""


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_VARS and k != "PHOENIX_ENV"}
    env.update(DJANGO_SETTINGS_MODULE="phoenix.settings", PHOENIX_DATA_DIR=str(tmp_path), **extra)
    return env


def resolve(env: dict[str, str]) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_nothing_set_runs_on_embedded_defaults(tmp_path: Path) -> None:
    resolved = resolve(clean_env(tmp_path))
    assert resolved == {
        "db": "django.db.backends.sqlite3",
        "cache": "django.core.cache.backends.locmem.LocMemCache",
        "channels": "channels.layers.InMemoryChannelLayer",
        "broker": "filesystem://",
        "events": "database",
        "features": "database",
        "debug": False,
    }


def test_service_urls_switch_to_postgres_redis_and_kafka(tmp_path: Path) -> None:
    env = clean_env(
        tmp_path,
        DATABASE_URL="postgres://phoenix:secret@db.internal:5432/phoenix",
        REDIS_URL="redis://cache.internal:6379/0",
        KAFKA_BOOTSTRAP_SERVERS="kafka.internal:9092",
    )
    resolved = resolve(env)
    assert resolved["db"] == "django.db.backends.postgresql"
    assert resolved["cache"] == "django.core.cache.backends.redis.RedisCache"
    assert resolved["channels"] == "channels_redis.pubsub.RedisPubSubChannelLayer"
    assert resolved["broker"] == "redis://cache.internal:6379/0"
    assert resolved["events"] == "kafka"
    assert resolved["features"] == "redis"


PRODUCTION_ENV = {
    "DJANGO_SECRET_KEY": "x7" * 30 + "-not-a-real-secret-but-long-and-random-enough",
    "DJANGO_ALLOWED_HOSTS": "phoenix.example.com",
}


@pytest.mark.parametrize(
    "selector",
    [
        {"DJANGO_SETTINGS_MODULE": "phoenix.settings.production"},
        {"PHOENIX_ENV": "production"},
    ],
    ids=["settings-module", "phoenix-env"],
)
def test_production_settings_pass_check_deploy(tmp_path: Path, selector: dict[str, str]) -> None:
    env = {**clean_env(tmp_path), **PRODUCTION_ENV, **selector}
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_refuses_to_start_without_a_secret_key(tmp_path: Path) -> None:
    env = {
        **clean_env(tmp_path),
        "PHOENIX_ENV": "production",
        "DJANGO_ALLOWED_HOSTS": "phoenix.example.com",
    }
    env.pop("DJANGO_SECRET_KEY", None)
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in result.stderr
