"""The card's page and the redeem link's landing. Both are static: nothing about a user is rendered,
and everything secret (the key, the phrase, a link's secret) stays in the browser, in the URL's
fragment at most, which browsers never send."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse

View = Callable[[HttpRequest], HttpResponse]


def chain_rpc_origin() -> str | None:
    """The origin of the chain RPC the node publishes (`PUBLIC_CHAIN_RPC_URL`), which the card's
    provider calls from the page: http(s) only (the provider speaks JSON-RPC over fetch), without
    any user:password part (a CSP header is no place for a credential)."""
    url = settings.PUBLIC_CHAIN_RPC_URL
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"}:
        return None
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2].lower()}"


def content_security_policy(request: HttpRequest) -> str:
    """Only the node's own origin, for scripts, styles, requests and the websocket, and the chain
    RPC it publishes; no inline code anywhere (the templates have none), no frames, no plugins, no
    forms sent anywhere (a form the script failed to take over must not put a passphrase in a URL),
    DOM sinks closed to strings."""
    socket_origin = f"{'wss' if request.is_secure() else 'ws'}://{request.get_host()}"
    connect = ["'self'", socket_origin, *filter(None, [chain_rpc_origin()])]
    return "; ".join(
        (
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            f"connect-src {' '.join(connect)}",
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
    return render(
        request,
        "card/index.html",
        {"api_base": "/api/", "websocket_path": "/ws/v1", "link_max_wei": str(settings.CARD_LINK_MAX_WEI)},
    )


@card_headers
def dapp_page(request: HttpRequest) -> HttpResponse:
    """The demo dapp: a page of the card's origin that finds the card by EIP-6963 and has it sign
    and send on chain through EIP-1193 (card/assets/dapp.js)."""
    return render(request, "card/dapp.html", {"config_url": "/api/config"})


@card_headers
def redeem_link(request: HttpRequest) -> HttpResponse:
    """A Location without a fragment keeps the request's own (`#paymentId=…&secret=…`): the browser
    carries the secret over to the card, and the server never sees it."""
    return HttpResponseRedirect(reverse("card:page"))
