"""ASGI entry point served by daphne: HTTP goes to Django, websockets under /ws/ to Channels."""

from __future__ import annotations

import gc
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "connext_site.settings")

from django.conf import settings
from django.core.asgi import get_asgi_application

django_asgi_app = get_asgi_application()  # sets Django up before the consumers are imported

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import get_resolver  # noqa: E402

from channels_app import edge_limits  # noqa: E402
from channels_app.routing import websocket_urlpatterns  # noqa: E402
from connext_site import periodic  # noqa: E402

http_app = django_asgi_app
if settings.DEBUG:
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    http_app = ASGIStaticFilesHandler(django_asgi_app)
http_app = edge_limits.RequestBodyLimit(http_app, max_bytes=settings.API_MAX_BODY_BYTES)
http_app = edge_limits.FairShare(
    http_app, pace=edge_limits.process_pace, trusted_proxies=settings.EDGE.trusted_proxy_count
)
edge_limits.limit_daphne_bodies(settings.API_MAX_BODY_BYTES)
edge_limits.limit_websocket_messages(settings.WS_MAX_FRAME_BYTES)
edge_limits.wait_for_close_answers()

application = ProtocolTypeRouter(
    {
        "http": http_app,
        # No origin check: websocket clients authenticate with a signed token, never a cookie,
        # and wallets on other origins are meant to connect.
        "websocket": URLRouter(websocket_urlpatterns),
    }
)

if settings.TASKS_IN_PROCESS:
    periodic.start()

# Everything loaded so far (Django, DRF, web3, the views: ~180,000 objects) lives as long as the
# process: keep it out of the collector's full passes, each of which otherwise stopped every caller
# for about 100 ms on this machine (more often the more garbage a flood made).
get_resolver().url_patterns  # noqa: B018 - imports every view now rather than at the first request
gc.freeze()
