"""HTTP middleware of the node."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse

from channels_app import after_commit, realtime
from channels_app.api.errors import throttled_body
from channels_app.api.throttles import IpThrottle


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


class RateLimitMiddleware:
    """Every request under /api/ counts against its client IP's limit (RATE_LIMIT_PER_IP) before
    anything else runs: requests without a token, or with a bad one, are limited too. Over the limit:
    429 in the API's error shape with Retry-After."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith("/api/"):
            throttle = IpThrottle()
            if not throttle.allow_request(request, None):
                body, headers = throttled_body(throttle.wait())
                return JsonResponse(body, status=429, headers=headers)
        return self.get_response(request)
