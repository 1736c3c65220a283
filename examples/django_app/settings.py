"""Settings for the minimal Django example: LOGGING is a dictConfig, so the handler is one entry."""

SECRET_KEY = "example-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "urls"

LOGGING = {
    "version": 1,
    # Keep Django's default loggers: "django.request" logs every 500 with its traceback and
    # propagates to the root.
    "disable_existing_loggers": False,
    "handlers": {
        "highlight": {
            "class": "highlight_logging.HighlightHandler",
            "service_name": "django-demo",
        },
    },
    "root": {"level": "INFO", "handlers": ["highlight"]},
}
