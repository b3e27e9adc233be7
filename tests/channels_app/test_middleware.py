"""REST requests are answered before the follow-ups their commits release, through Django's own ASGI
handler (what daphne runs)."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from channels.testing import HttpCommunicator
from django.core.handlers.asgi import ASGIHandler
from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.test import override_settings
from django.urls import path

from channels_app import after_commit
from channels_app.models import BlockCursor

pytestmark = pytest.mark.django_db(transaction=True)

release = threading.Event()
follow_up_runs: list[tuple[str, int, bool]] = []


def slow_follow_up(*, label: str) -> None:
    """Waits until the test has the answer: it can only finish if the answer went out first."""
    assert release.wait(timeout=10)
    # Still in the request's thread, with its database connection usable.
    follow_up_runs.append((label, threading.get_ident(), BlockCursor.objects.filter(name=label).exists()))


def update_view(request: HttpRequest) -> JsonResponse:
    with transaction.atomic():
        BlockCursor.objects.create(name="answered-first", chain_id=1, block_number=7)
        after_commit.run_inline(slow_follow_up, label="answered-first")
    return JsonResponse({"thread": threading.get_ident()})


urlpatterns = [path("update", update_view)]


@override_settings(ROOT_URLCONF=__name__, ALLOWED_HOSTS=["*"])
def test_the_answer_goes_out_before_the_follow_ups_run_and_they_still_run():
    release.clear()
    follow_up_runs.clear()

    async def scenario():
        communicator = HttpCommunicator(ASGIHandler(), "GET", "/update")
        response = await communicator.get_response(timeout=5)  # while the follow-up still waits
        ran_before_release = list(follow_up_runs)
        release.set()
        for _ in range(100):
            if follow_up_runs:
                break
            await asyncio.sleep(0.05)
        return response, ran_before_release

    response, ran_before_release = asyncio.run(scenario())

    assert response["status"] == 200
    assert ran_before_release == []
    view_thread = json.loads(response["body"])["thread"]
    assert follow_up_runs == [("answered-first", view_thread, True)]
