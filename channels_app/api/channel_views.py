"""The channel API: configuration, open, the latest state, updates both ways, collateral, withdrawals.

Views parse and shape; `channels_app.services` decides. Every refusal is a 4xx with a stable code;
a `stale_nonce` or `update_pending` answer carries the latest signed state (and the node's open
proposal) so the client can sync and retry.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from channels_app import network, selectors
from channels_app.api import answers
from channels_app.api.errors import ApiError
from channels_app.api.fields import AddressField, HexBytesField, WeiField
from channels_app.api.schema import UPDATE_SCHEMA, refusals
from channels_app.models import Channel
from channels_app.services import channels, collateral, fence, payments, withdrawals
from connext.protocol import serialization
from connext.protocol.errors import MalformedError, ProtocolError
from connext.protocol.types import SetupUpdate, Update


def parse_update(raw: Any) -> Update:
    try:
        return serialization.update_from_json(raw)
    except ProtocolError as exc:
        raise ApiError(
            "malformed_update", exc.message, extra={"field": f"update.{exc.field}" if exc.field else "update"}
        ) from None


def _own_channel(request: Request) -> Channel:
    channel = selectors.channel_get_for_user(user=request.user.address)
    if channel is None:
        raise ApiError(
            "no_channel", "You have no channel with this node yet; open one first.", http_status=404
        )
    return channel


def channel_json(channel: Channel) -> dict[str, Any]:
    return {
        "channelAddress": channel.address,
        "status": channel.status,
        "deployed": channel.deployed,
        **channels.signed_state_json(channel),
        "proposal": channels.proposal_json(channel),
        "fenced": channel.fenced_since is not None,
    }


class ConfigView(APIView):
    """What a client needs to open a channel here: chain, node, contracts, assets, dispute window."""

    @extend_schema(responses=answers.ConfigAnswer)
    def get(self, request: Request) -> Response:
        from django.conf import settings

        net = network.network()
        return Response(
            {
                "chainId": str(net.chain_id),
                "nodeAddress": net.node_address,
                "contracts": net.contracts,
                "transferDefinitions": {kind.value: address for address, kind in net.definitions.items()},
                "supportedAssets": list(net.assets),
                "disputeTimeout": str(settings.DISPUTE_TIMEOUT_SECONDS),
                "chainRpcUrl": settings.PUBLIC_CHAIN_RPC_URL,
                # What a client keeps to so it is never refused for its pace (README, "The node's edges").
                "limits": {
                    "socketRequestsInFlight": settings.WS_MAX_REQUESTS_IN_FLIGHT,
                    "pace": settings.EDGE.fair_share,
                    "burst": settings.FAIR_SHARE_BURST,
                },
            }
        )


class AnswerInput(serializers.Serializer):
    """The user's countersignature of the node's open proposal, sent with the user's own update."""

    nonce = WeiField()
    signature = HexBytesField(length=65)


@extend_schema_field(UPDATE_SCHEMA)
class UpdateField(serializers.JSONField):
    """The update as the client sent it: parsed (and refused) by the protocol core, not here."""


class UpdateInput(serializers.Serializer):
    update = UpdateField()
    signature = HexBytesField(length=65)
    meta = serializers.DictField(required=False)
    answer = AnswerInput(required=False)


def _signature(value: object) -> bytes | None:
    try:
        return serialization.parse_bytes(value, field="signature", length=65)
    except MalformedError:
        return None


def _nonce(value: object) -> int | None:
    try:
        return serialization.parse_uint(value, field="nonce")
    except MalformedError:
        return None


def _answer_fast(value: object) -> dict[str, Any] | None:
    if type(value) is not dict:
        return None
    nonce, signature = _nonce(value.get("nonce")), _signature(value.get("signature"))
    return None if nonce is None or signature is None else {"nonce": nonce, "signature": signature}


def _update_input_fast(data: object) -> dict[str, Any] | None:
    """`UpdateInput`'s validated data for a body in the plain form a client sends, without building
    the serializer (a few hundred microseconds a request on the hot path); None for anything else,
    which the serializer then takes, so every refusal still has its one error body. It accepts only
    what the serializer accepts, to the same data (tests/channels_app/test_update_inputs.py):

    - `update` present and not null (the serializer's JSONField takes any JSON the body parsed to);
    - `signature`, and `answer`'s `nonce` and `signature`, in the one form the fields parse (a
      non-empty string, so never the fields' `blank` refusal);
    - `meta` a JSON object (a DictField of unvalidated values: keys as strings, values as given);
    - other keys ignored, as the serializer ignores them."""
    if type(data) is not dict:
        return None
    update = data.get("update")
    signature = _signature(data.get("signature"))
    if update is None or signature is None:
        return None
    given: dict[str, Any] = {"update": update, "signature": signature}
    if "meta" in data:
        meta = data["meta"]
        if type(meta) is not dict:
            return None
        given["meta"] = {str(key): value for key, value in meta.items()}
    if "answer" in data:
        answer = _answer_fast(data["answer"])
        if answer is None:
            return None
        given["answer"] = answer
    return given


def _validated(
    fast: dict[str, Any] | None, serializer: type[serializers.Serializer], data: object
) -> dict[str, Any]:
    if fast is not None:
        return fast
    body = serializer(data=data)
    body.is_valid(raise_exception=True)
    return dict(body.validated_data)


def update_input(data: object) -> dict[str, Any]:
    """The validated body of a user's update (`UpdateInput`): a 400 `invalid_input` when malformed."""
    return _validated(_update_input_fast(data), UpdateInput, data)


def countersign_input(data: object) -> dict[str, Any]:
    """The validated body of a countersignature (`CountersignInput`), fast for the plain form as
    `update_input` is: a 400 `invalid_input` when malformed."""
    return _validated(_answer_fast(data), CountersignInput, data)


class ChannelView(APIView):
    """GET: your channel's latest doubly signed state and the node's open proposal.
    POST: open your channel with a signed setup update (opening again returns the channel)."""

    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: answers.ChannelAnswer, **refusals(401, 404)})
    def get(self, request: Request) -> Response:
        return Response(channel_json(_own_channel(request)))

    @extend_schema(
        request=UpdateInput,
        responses={200: answers.ChannelAnswer, 201: answers.ChannelAnswer, **refusals(400, 401, 403)},
    )
    def post(self, request: Request) -> Response:
        body = UpdateInput(data=request.data)
        body.is_valid(raise_exception=True)
        update = parse_update(body.validated_data["update"])
        if not isinstance(update, SetupUpdate):
            raise ApiError("invalid_update", "A channel is opened with a setup update.")
        channel, created = channels.channel_open(
            user=request.user.address, update=update, signature=body.validated_data["signature"]
        )
        return Response(
            channel_json(channel), status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )


def channel_update_request(address: str, data: Any) -> dict[str, Any]:
    """POST /api/channel/updates (also over the websocket): the node's countersignature."""
    body = update_input(data)
    update = parse_update(body["update"])
    answer = body.get("answer")
    signed = payments.user_update(
        user=address,
        update=update,
        signature=body["signature"],
        meta=body.get("meta"),
        answer=(answer["nonce"], answer["signature"]) if answer else None,
    )
    return signed_json(signed)


class ChannelUpdateView(APIView):
    """Propose an update you initiated (deposit, create, resolve); get the node's countersignature.
    `answer` (optional) countersigns the node's open proposal first, in the same transaction."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=UpdateInput,
        responses={200: answers.SignedStateAnswer, **refusals(400, 401, 403, 404, 409, 429, 503)},
    )
    def post(self, request: Request) -> Response:
        return Response(channel_update_request(request.user.address, request.data))


class CountersignInput(serializers.Serializer):
    nonce = WeiField()
    signature = HexBytesField(length=65)


def channel_countersign_request(address: str, data: Any) -> dict[str, Any]:
    """POST /api/channel/countersign (also over the websocket): the doubly signed proposal."""
    body = countersign_input(data)
    signed = payments.countersign(
        user=address,
        channel_address=network.network().channel_address_for(address),  # one per user: no read
        nonce=body["nonce"],
        signature=body["signature"],
    )
    return signed_json(signed)


class CountersignView(APIView):
    """Countersign the node's open proposal at `nonce` (after validating it yourself)."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=CountersignInput,
        responses={200: answers.SignedStateAnswer, **refusals(400, 401, 403, 404, 409)},
    )
    def post(self, request: Request) -> Response:
        return Response(channel_countersign_request(request.user.address, request.data))


class ReconcileInput(serializers.Serializer):
    state = serializers.DictField(help_text="Your latest doubly signed state (the protocol's JSON).")
    nodeSignature = HexBytesField(length=65)
    userSignature = HexBytesField(length=65)


class ReconcileView(APIView):
    """Show your latest doubly signed state to a node whose records are behind it (restored from a
    backup): a newer state is adopted, the same one confirmed, an older one refused with the node's.
    Until then the node signs nothing for the channel (`channel_reconciling`)."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=ReconcileInput,
        responses={200: answers.ReconcileAnswer, **refusals(400, 401, 403, 409, 503)},
    )
    def post(self, request: Request) -> Response:
        body = ReconcileInput(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            state = serialization.channel_state_from_json(body.validated_data["state"])
        except (ProtocolError, KeyError, TypeError, ValueError) as exc:
            message = exc.message if isinstance(exc, ProtocolError) else repr(exc)
            raise ApiError("invalid_state", f"The state cannot be read: {message}") from None
        result = fence.reconcile(
            user=request.user.address,
            state=state,
            node_signature=body.validated_data["nodeSignature"],
            user_signature=body.validated_data["userSignature"],
        )
        return Response(
            channel_json(result.channel) | {"adopted": result.adopted, "waitingFor": result.waiting_for}
        )


def signed_json(signed: channels.SignedState) -> dict[str, Any]:
    return {
        "state": serialization.channel_state_to_json(signed.state),
        "nodeSignature": serialization.hex_bytes(signed.node_signature),
        "userSignature": serialization.hex_bytes(signed.user_signature),
    }


class ChannelHistoryView(APIView):
    """Your channel's doubly signed updates after `since` (a nonce), oldest first."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        parameters=[OpenApiParameter("since", str, description="A nonce (a whole number); default 0.")],
        responses={200: answers.ChannelHistoryAnswer, **refusals(400, 401, 404)},
    )
    def get(self, request: Request) -> Response:
        since = request.query_params.get("since", "0")
        if not since.isdigit():
            raise ApiError("invalid_input", "`since` is a nonce (a whole number).")
        channel = _own_channel(request)
        return Response(
            {
                "updates": [
                    {
                        "nonce": str(record.nonce),
                        "update": record.update,
                        "stateHash": record.state_hash,
                        "nodeSignature": record.node_signature,
                        "userSignature": record.user_signature,
                    }
                    for record in selectors.channel_updates_since(channel=channel, nonce=int(since))
                ]
            }
        )


class CollateralView(APIView):
    """Ask the node to top up its side of your channel (default: its rebalance target). The node
    matches collateral to your own balance and the payments you received lately, up to a bound per
    account (`collateral_not_justified`, with `justified`)."""

    permission_classes = [IsAuthenticated]

    class InputSerializer(serializers.Serializer):
        assetId = AddressField()
        amount = WeiField(required=False)

        class Meta:
            ref_name = "CollateralRequest"  # its name in the OpenAPI schema

    @extend_schema(
        request=InputSerializer,
        responses={
            200: answers.CollateralAnswer,
            202: answers.CollateralAnswer,
            **refusals(400, 401, 404, 409, 503),
        },
    )
    def post(self, request: Request) -> Response:
        body = self.InputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        channel = _own_channel(request)
        record = collateral.collateral_request(
            channel_id=channel.pk,
            asset_id=body.validated_data["assetId"],
            amount=body.validated_data.get("amount"),
        )
        return Response(
            {"requested": record is not None, "transactionId": record.pk if record else None},
            status=status.HTTP_202_ACCEPTED if record else status.HTTP_200_OK,
        )


class WithdrawalsView(APIView):
    """Your withdrawals and the state of their transactions."""

    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: answers.WithdrawalsAnswer, **refusals(401, 404)})
    def get(self, request: Request) -> Response:
        channel = _own_channel(request)
        return Response(
            {
                "withdrawals": [
                    withdrawals.withdrawal_json(w) for w in selectors.withdrawals_for_channel(channel=channel)
                ]
            }
        )
