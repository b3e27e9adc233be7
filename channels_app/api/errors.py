"""One error shape for every API failure: `{"error": {"code": ..., "message": ..., "fields"?: ...}}`.

`code` is stable and machine-readable (clients branch on it); `message` is for people.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response

from channels_app import chain, metrics
from channels_app.services.errors import ServiceError

logger = logging.getLogger(__name__)


class ApiError(exceptions.APIException):
    """An error raised by our own code with an explicit code and HTTP status."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        http_status: int = status.HTTP_400_BAD_REQUEST,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail=message, code=code)
        self.status_code = http_status
        self.error_code = code
        self.message = message
        self.extra = extra or {}


_DRF_CODES: dict[type[exceptions.APIException], str] = {
    exceptions.ParseError: "malformed_request",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "throttled",
    exceptions.ValidationError: "invalid_input",
}


def error_body(
    code: str, message: str, fields: Any = None, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if fields:
        error["fields"] = fields
    error.update(extra or {})
    return {"error": error}


def throttled_body(wait: float | None) -> tuple[dict[str, Any], dict[str, str]]:
    """A 429's body and headers: when to retry, in seconds, in both."""
    seconds = max(1, math.ceil(wait or 0))
    message = f"Too many requests; retry in {seconds} seconds."
    return error_body("throttled", message, extra={"retryAfter": seconds}), {"Retry-After": str(seconds)}


def error_answer(exc: Exception) -> tuple[int, dict[str, Any]] | None:
    """(HTTP status, error body) for an API exception, or for a chain read that failed (503: nothing
    was changed, the caller may retry); None for anything else (a bug). Shared by the REST handler and
    the websocket's requests, and counted by code (`connext_refusals_total`)."""
    answer = _error_answer(exc)
    if answer is not None:
        metrics.refusal_count(answer[1]["error"]["code"])
    return answer


def _error_answer(exc: Exception) -> tuple[int, dict[str, Any]] | None:
    if isinstance(exc, chain.READ_ERRORS):
        logger.warning("a request's chain read failed: %s", exc)
        message = "The node cannot read the chain right now; nothing changed. Retry shortly."
        return status.HTTP_503_SERVICE_UNAVAILABLE, error_body("chain_unavailable", message)
    if isinstance(exc, ServiceError):  # a service refused: its own code, status and extras
        return exc.status, error_body(exc.code, exc.message, extra=exc.extra)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    if not isinstance(exc, exceptions.APIException):
        return None
    if isinstance(exc, ApiError):
        body = error_body(exc.error_code, exc.message, extra=exc.extra)
    elif isinstance(exc, exceptions.Throttled):
        body, _ = throttled_body(exc.wait)
    elif isinstance(exc, exceptions.ValidationError):
        body = error_body("invalid_input", "The request has invalid fields.", fields=exc.detail)
    else:
        code = next((c for kind, c in _DRF_CODES.items() if isinstance(exc, kind)), "error")
        body = error_body(code, str(exc.detail))
    return exc.status_code, body


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    answer = error_answer(exc)
    if answer is None:
        return None  # a bug: let Django log it and answer 500
    status_code, body = answer
    headers: dict[str, str] = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header  # type: ignore[attr-defined]
    if isinstance(exc, exceptions.Throttled):
        headers.update(throttled_body(exc.wait)[1])
    from rest_framework.views import set_rollback  # here: rest_framework.views imports our auth class

    set_rollback()
    return Response(body, status=status_code, headers=headers)
