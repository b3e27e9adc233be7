"""What drf-spectacular cannot see by itself when it writes the OpenAPI schema (registered on import,
from the app's `ready`): the bearer scheme, the formats of our protocol fields, and the one error
shape every refusal has."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension, OpenApiSerializerFieldExtension
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "channels_app.api.authentication.BearerTokenAuthentication"
    name = "bearerToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A token from POST /api/auth/token (sign the nonce of GET /api/auth/nonce).",
        }


class AddressFieldSchema(OpenApiSerializerFieldExtension):
    target_class = "channels_app.api.fields.AddressField"

    def map_serializer_field(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        return {
            "type": "string",
            "pattern": "^0x[0-9a-fA-F]{40}$",
            "description": "An Ethereum address (one case throughout, or EIP-55 checksummed).",
        }


class HexBytesFieldSchema(OpenApiSerializerFieldExtension):
    target_class = "channels_app.api.fields.HexBytesField"

    def map_serializer_field(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        length = self.target.length
        digits = "([0-9a-fA-F]{2})*" if length is None else f"[0-9a-fA-F]{{{2 * length}}}"
        return {
            "type": "string",
            "pattern": f"^0x{digits}$",
            "description": "0x-prefixed hex" + ("" if length is None else f" of {length} bytes") + ".",
        }


class WeiFieldSchema(OpenApiSerializerFieldExtension):
    target_class = "channels_app.api.fields.WeiField"

    def map_serializer_field(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        return {
            "type": "string",
            "pattern": "^(0|[1-9][0-9]{0,77})$",
            "description": "A whole number (wei, a nonce, seconds) as a decimal string, below 2^256.",
        }


class ErrorDetail(serializers.Serializer):
    code = serializers.CharField(help_text="Stable and machine-readable: clients branch on it.")
    message = serializers.CharField(help_text="For people.")
    fields = serializers.JSONField(required=False, help_text="With invalid_input: what each field lacks.")

    class Meta:
        ref_name = "ErrorDetail"


class ErrorBody(serializers.Serializer):
    error = ErrorDetail(
        help_text="Some codes carry more: stale_nonce and update_pending the latest signed state "
        "(`latest`) and the node's open proposal (`proposal`)."
    )

    class Meta:
        ref_name = "Error"


_REFUSALS = {
    400: "Refused: malformed input, or an update that breaks a rule. Nothing changed.",
    401: "No valid bearer token (or, at login, a bad signature or challenge).",
    403: "Not yours: another user's channel, or an update initiated in someone else's name.",
    404: "No such thing of yours (channel, payment, user).",
    409: "Conflicts with the current state (a stale nonce, an open proposal, a payment's status); "
    "sync and retry.",
}


def refusals(*statuses: int) -> dict[int, OpenApiResponse]:
    """The documented error answers of an operation: `{"error": {"code", "message", ...}}`."""
    return {status: OpenApiResponse(ErrorBody, description=_REFUSALS[status]) for status in statuses}
