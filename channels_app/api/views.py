from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from channels_app import health
from channels_app.api.errors import error_body


class HealthView(APIView):
    """Whether the node can serve: database, Redis, chain and workers, each ok or failing with a reason."""

    @extend_schema(
        responses={
            200: inline_serializer(
                "Health", {"status": serializers.CharField(), "checks": serializers.DictField()}
            ),
            503: inline_serializer(
                "Unhealthy", {"status": serializers.CharField(), "checks": serializers.DictField()}
            ),
        }
    )
    def get(self, request: Request) -> Response:
        healthy, checks = health.node_health()
        return Response(
            {
                "status": "ok" if healthy else "failing",
                "checks": {name: check.as_json() for name, check in checks.items()},
            },
            status=status.HTTP_200_OK if healthy else status.HTTP_503_SERVICE_UNAVAILABLE,
        )


class ApiIndexView(APIView):
    """Where things are: the endpoints of this API and the websocket."""

    @extend_schema(responses={200: inline_serializer("ApiIndex", {"endpoints": serializers.DictField()})})
    def get(self, request: Request) -> Response:
        return Response(
            {
                "endpoints": {
                    "health": request.build_absolute_uri("/api/health"),
                    "schema": request.build_absolute_uri("/api/schema"),
                    "auth_nonce": request.build_absolute_uri("/api/auth/nonce"),
                    "auth_token": request.build_absolute_uri("/api/auth/token"),
                    "websocket": "/ws/v1",
                }
            }
        )


@csrf_exempt  # like the API's own views: a POST to a wrong path is a 404, not a CSRF page
def api_not_found(request: HttpRequest, unmatched: str) -> JsonResponse:
    """Any other path under /api/: a 404 in the API's error shape, not Django's HTML page (a client
    parses every answer of the API as JSON)."""
    return JsonResponse(error_body("not_found", f"No endpoint at {request.path}."), status=404)


# Django's own answers for what fails before or outside a DRF view (a body it could not read, a
# crash), used when DJANGO_DEBUG is false: in the API's error shape under /api/, its pages elsewhere.
def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse(error_body("malformed_request", "The request could not be read."), status=400)
    return defaults.bad_request(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if request.path.startswith("/api/"):
        message = "The node failed to handle the request."
        return JsonResponse(error_body("internal_error", message), status=500)
    return defaults.server_error(request)
