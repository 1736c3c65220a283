"""URLs and views of the minimal Django example."""

import logging

from django.http import HttpRequest, HttpResponse
from django.urls import path

log = logging.getLogger(__name__)


def index(request: HttpRequest) -> HttpResponse:
    log.info("hello from django", extra={"user_id": 42})
    return HttpResponse("ok\n")


def boom(request: HttpRequest) -> HttpResponse:
    # Unhandled: Django answers 500 and logs "Internal Server Error: /boom" on django.request.
    raise RuntimeError("django view failed")


urlpatterns = [path("", index), path("boom", boom)]
