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


def _hex(length: int | None = None) -> dict[str, Any]:
    digits = "([0-9a-fA-F]{2})*" if length is None else f"[0-9a-fA-F]{{{2 * length}}}"
    return {"type": "string", "pattern": f"^0x{digits}$"}


# The protocol's written forms (connext.protocol.serialization reads nothing else).
_UINT = {"type": "string", "pattern": "^(0|[1-9][0-9]{0,77})$"}
_ADDRESS = _hex(20)
_BYTES = _hex()
_BYTES32 = _hex(32)


class AddressFieldSchema(OpenApiSerializerFieldExtension):
    target_class = "channels_app.api.fields.AddressField"

    def map_serializer_field(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        return {
            **_ADDRESS,
            "description": "An Ethereum address (one case throughout, or EIP-55 checksummed).",
        }


class HexBytesFieldSchema(OpenApiSerializerFieldExtension):
    target_class = "channels_app.api.fields.HexBytesField"

    def map_serializer_field(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        length = self.target.length
        return {
            **_hex(length),
            "description": "0x-prefixed hex" + (f" of {length} bytes." if length else "."),
        }


class WeiFieldSchema(OpenApiSerializerFieldExtension):
    target_class = "channels_app.api.fields.WeiField"

    def map_serializer_field(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        return {
            **_UINT,
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
        "(`latest`) and the node's open proposal (`proposal`); the limits their bound "
        "(`minimum`, `justified`, `retryAfter`, `gasPerDay`, `gasSpent`)."
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
    429: "Too many requests from this IP or account (code throttled), or over a limit on what one account "
    "may make the node spend (withdrawals per channel and hour, withdrawal gas per day); retry after "
    "`retryAfter` seconds (also the Retry-After header, for throttled). Nothing changed.",
    503: "The node cannot read the chain right now (code chain_unavailable); nothing changed, retry.",
}


def refusals(*statuses: int) -> dict[int, OpenApiResponse]:
    """The documented error answers of an operation: `{"error": {"code", "message", ...}}`; every
    operation may be rate limited (429)."""
    return {status: OpenApiResponse(ErrorBody, description=_REFUSALS[status]) for status in (*statuses, 429)}


# -- the protocol's update, as `connext.protocol.serialization` reads it (every key required, no other)

_DEFUND = {
    "type": "object",
    "properties": {"assetId": _ADDRESS, "defundNonce": _UINT, "toNode": _UINT, "toUser": _UINT},
    "required": ["assetId", "defundNonce", "toNode", "toUser"],
    "additionalProperties": False,
}
_UPDATE_FIELDS: dict[str, dict[str, Any]] = {
    "setup": {"chainId": _UINT, "node": _ADDRESS, "user": _ADDRESS, "timeout": _UINT},
    "deposit": {"assetId": _ADDRESS, "totalDepositsNode": _UINT, "totalDepositsUser": _UINT},
    "create": {
        "assetId": _ADDRESS,
        "amount": _UINT,
        "transferDefinition": _ADDRESS,
        "paymentId": _BYTES32,
        "encodedState": _BYTES,
        "transferTimeout": _UINT,
        "metaHash": _BYTES32,
    },
    "resolve": {"transferId": _BYTES32, "encodedResolver": _BYTES},
    "resume": {
        "defunds": {"type": "array", "items": _DEFUND},
        "droppedTransferIds": {"type": "array", "items": _BYTES32},
    },
    # Checked against the node's offer (GET /api/swap/rates).
    "swap": {"giveAssetId": _ADDRESS, "giveAmount": _UINT, "takeAssetId": _ADDRESS, "takeAmount": _UINT},
}


def _update_shape(kind: str, fields: dict[str, Any]) -> dict[str, Any]:
    properties = {
        "type": {"type": "string", "enum": [kind]},
        "channelAddress": _ADDRESS,
        "nonce": _UINT,
        "initiator": _ADDRESS,
        **fields,
    }
    return {
        "type": "object",
        "title": f"{kind} update",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


UPDATE_SCHEMA = {
    "oneOf": [_update_shape(kind, fields) for kind, fields in _UPDATE_FIELDS.items()],
    "description": "A channel update in the protocol's JSON (docs/protocol.md); its `type` says which.",
}
