"""What drf-spectacular cannot see by itself when it writes the OpenAPI schema (registered on import,
from the app's `ready`)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "channels_app.api.authentication.BearerTokenAuthentication"
    name = "bearerToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A token from POST /api/auth/token (sign the nonce of GET /api/auth/nonce).",
        }
