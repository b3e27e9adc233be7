"""HTTP middleware of the node."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from channels_app import after_commit, realtime


class AnswerFirstMiddleware:
    """A REST request is answered before the payment steps its commits released (forward, settle,
    the next proposal) run: the caller waits for its own answer, not for work done for others. The
    steps run when the server closes the response, after sending it (Django's ASGI handler closes a
    response once it is sent, in the request's own thread; the test client closes it before
    returning), and before the request's database connection is cleaned up. The pushes the request
    itself released go out together before its answer (`realtime.batched`)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        with after_commit.answer_first() as follow_ups, realtime.batched():
            response = self.get_response(request)
        if follow_ups:
            # Django's hook for work at close (FileResponse closes its file through it).
            response._resource_closers.append(lambda: after_commit.run_all(follow_ups))
        return response
