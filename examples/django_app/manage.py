#!/usr/bin/env python
"""A minimal Django project whose logging goes through LOGGING in settings.py.

Serve it (from examples/django_app/):  python manage.py runserver --noreload
The endpoint comes from OTEL_EXPORTER_OTLP_ENDPOINT. Stop it with Ctrl-C (SIGINT): runserver then
exits normally and queued records are flushed at exit.
"""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
