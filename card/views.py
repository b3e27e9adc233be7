"""The card's page and the redeem link's landing. Both are static: nothing about a user is rendered,
and everything secret (the key, the phrase, a link's secret) stays in the browser, in the URL's
fragment at most, which browsers never send."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse

View = Callable[[HttpRequest], HttpResponse]


def content_security_policy(request: HttpRequest) -> str:
    """Only the node's own origin, for scripts, styles, requests and the websocket; no inline code
    anywhere (the template has none), no frames, no plugins, no forms sent anywhere (a form the
    script failed to take over must not put a passphrase in a URL), DOM sinks closed to strings."""
    socket_origin = f"{'wss' if request.is_secure() else 'ws'}://{request.get_host()}"
    return "; ".join(
        (
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            f"connect-src 'self' {socket_origin}",
            "img-src 'self' data: blob:",
            "media-src 'self' blob:",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
            "require-trusted-types-for 'script'",
            "trusted-types 'none'",
        )
    )


def card_headers(view: View) -> View:
    """The card's safety headers, set here whatever the settings say (SecurityMiddleware only sets
    a Referrer-Policy where none is; it adds Cross-Origin-Opener-Policy, XFrameOptions X-Frame-Options)."""

    @wraps(view)
    def wrapped(request: HttpRequest) -> HttpResponse:
        response = view(request)
        response.headers["Content-Security-Policy"] = content_security_policy(request)
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Permissions-Policy"] = "camera=(self), microphone=(), geolocation=()"
        return response

    return wrapped


@card_headers
def card_page(request: HttpRequest) -> HttpResponse:
    return render(request, "card/index.html", {"api_base": "/api/", "websocket_path": "/ws/v1"})


@card_headers
def redeem_link(request: HttpRequest) -> HttpResponse:
    """A Location without a fragment keeps the request's own (`#paymentId=…&secret=…`): the browser
    carries the secret over to the card, and the server never sees it."""
    return HttpResponseRedirect(reverse("card:page"))
