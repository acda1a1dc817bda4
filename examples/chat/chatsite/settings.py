"""Settings of the chat example: SQLite, Django auth, one channel layer.

Everything a deployment may change comes from environment variables, so the
same project runs as one process (the default: in-memory layer, embedded
workers) or as several processes on one host (``CHAT_LAYER=ipc``) or on
several hosts (``CHAT_LAYER=redis``) - see docs/deployment.md.

``CHAT_LAYER``      memory (default) | ipc | redis
``CHAT_DB``         path of the SQLite file (default: db.sqlite3 beside manage.py)
``CHAT_REDIS_URL``  Redis host(s) for CHAT_LAYER=redis, comma-separated
``CHAT_DEBUG``      1 or 0 (default 0; ``bash scripts/chat`` sets 1 for the demo)
``CHAT_ALLOWED_HOSTS`` extra host names, comma-separated
``CHAT_CSRF_TRUSTED_ORIGINS``, ``CHAT_BEHIND_TLS_PROXY`` behind an https proxy
                    (the latter also makes the server trust the proxy's
                    X-Forwarded-* headers from 127.0.0.1)
``CHAT_SECRET_KEY`` set it in production; the default is only for the demo
"""

from __future__ import annotations

import os
from pathlib import Path

import django

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("CHAT_SECRET_KEY", "chanlite-chat-demo-not-secret")
# Off unless asked for: DEBUG pages show settings and code to anyone. The
# demo script (scripts/chat) turns it on for local use.
DEBUG = os.environ.get("CHAT_DEBUG", "0") == "1"
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]"] + [
    h.strip() for h in os.environ.get("CHAT_ALLOWED_HOSTS", "").split(",") if h.strip()
]
# Behind a TLS-terminating proxy (docs/deployment.md): the public origin,
# e.g. CHAT_CSRF_TRUSTED_ORIGINS=https://chat.example.com, and trust the
# proxy's X-Forwarded-Proto so Django knows the request was https.
CSRF_TRUSTED_ORIGINS = [
    o.strip() for o in os.environ.get("CHAT_CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()
]
if os.environ.get("CHAT_BEHIND_TLS_PROXY") == "1":
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
    # The server too: client address, scheme (the WebSocket origin check
    # compares it) from the proxy on this host (docs/deployment.md).
    CHANLITE_SERVER = {"proxy_headers": True}

INSTALLED_APPS = [
    # chanlite before staticfiles: its runserver (HTTP + WebSocket + workers)
    # must win over staticfiles' WSGI-only one.
    "chanlite",
    "chanlite.delay",  # `manage.py rundelay` and its table (CHAT_LAYER=ipc/redis)
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "chat",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "chatsite.urls"
WSGI_APPLICATION = "chatsite.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

_sqlite_options: dict = {
    # Worker threads (and, with CHAT_LAYER=ipc, worker processes) write
    # sessions and messages concurrently: wait for the lock instead of failing.
    "timeout": 20,
}
if django.VERSION >= (5, 1):
    # Take the write lock at BEGIN, so two writers never deadlock on an
    # upgrade from a read lock ("database is locked" under load); WAL lets
    # readers go on while one thread writes.
    _sqlite_options["transaction_mode"] = "IMMEDIATE"
    _sqlite_options["init_command"] = "PRAGMA journal_mode=WAL;"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("CHAT_DB", str(BASE_DIR / "db.sqlite3")),
        "OPTIONS": _sqlite_options,
    }
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "index"
LOGOUT_REDIRECT_URL = "login"

if os.environ.get("CHAT_FAST_PASSWORD_HASHER") == "1":
    # Tests only: the default hasher is deliberately slow (seconds per login
    # on a busy CI machine). Never set this for real users.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Sessions live in the database, so every process (server, runworker) sees
# the same ones: the WebSocket handshake's cookie finds the user that logged
# in through a view, and channel sessions survive a worker restart.
SESSION_ENGINE = "django.contrib.sessions.backends.db"


def _channel_layers() -> dict:
    """The ``default`` layer picked by CHAT_LAYER (see the module docstring)."""
    kind = os.environ.get("CHAT_LAYER", "memory")
    routing = "chat.routing.channel_routing"
    if kind == "memory":
        return {"default": {"BACKEND": "chanlite.layers.memory.InMemoryChannelLayer",
                            "ROUTING": routing}}
    if kind == "ipc":
        return {
            "default": {
                "BACKEND": "chanlite.layers.ipc.IPCChannelLayer",
                "CONFIG": {"prefix": os.environ.get("CHAT_IPC_PREFIX", "chanlite-chat")},
                "ROUTING": routing,
            }
        }
    if kind == "redis":
        hosts = os.environ.get("CHAT_REDIS_URL", "redis://127.0.0.1:6379/0").split(",")
        return {"default": {"BACKEND": "chanlite.layers.redis.RedisChannelLayer",
                            "CONFIG": {"hosts": [h.strip() for h in hosts if h.strip()]},
                            "ROUTING": routing}}
    raise ValueError(f"CHAT_LAYER must be memory, ipc or redis, not {kind!r}")


CHANNEL_LAYERS = _channel_layers()

# Words the moderation task (a consumer on the `chat.moderate` channel)
# masks before a message is stored and broadcast.
CHAT_BANNED_WORDS = ["darn", "heck"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        # propagate=False: `chanlite serve` also logs through the root logger.
        "chanlite": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "chat": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}
