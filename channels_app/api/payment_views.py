"""Payments: history, one payment's status, link redemption, the sender's cancel, receivers' keys."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from channels_app import selectors
from channels_app.api import answers
from channels_app.api.errors import ApiError
from channels_app.api.fields import AddressField, HexBytesField
from channels_app.api.schema import refusals
from channels_app.services import payments

PAYMENT_ID = r"0x[0-9a-fA-F]{64}"
DEFAULT_HISTORY_PAGE, MAX_HISTORY_PAGE = 200, 500
_PAYMENT_ID = OpenApiParameter(
    "payment_id", str, OpenApiParameter.PATH, pattern=f"^{PAYMENT_ID}$", description="0x + 32 bytes of hex."
)


class TransferHistoryView(APIView):
    """Payments you sent or received, newest first, a page at a time: `limit` (1 to 500, default 200)
    and, for the next page, `before` = the last payment id of the page you have. `more` says whether
    older payments remain."""

    permission_classes = [IsAuthenticated]

    class QuerySerializer(serializers.Serializer):
        limit = serializers.IntegerField(
            min_value=1, max_value=MAX_HISTORY_PAGE, default=DEFAULT_HISTORY_PAGE
        )
        before = serializers.RegexField(rf"^{PAYMENT_ID}$", required=False)

        class Meta:
            ref_name = "TransferHistoryQuery"  # its name in the OpenAPI schema

    @extend_schema(
        operation_id="transfers_list",
        parameters=[QuerySerializer],
        responses={200: answers.PaymentPageAnswer, **refusals(400, 401, 404)},
    )
    def get(self, request: Request) -> Response:
        # A plain dict: DRF reads an empty value in a QueryDict as an absent one (`?limit=` would be
        # the default page); here it is refused like any other malformed value.
        query = self.QuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        limit, before = query.validated_data["limit"], None
        if "before" in query.validated_data:
            before = selectors.payment_get_for_user(
                user=request.user.address, payment_id=query.validated_data["before"].lower()
            )
            if before is None:
                raise ApiError("unknown_payment", "`before` is not a payment of yours.", http_status=404)
        page = list(selectors.payments_for_user(user=request.user.address, limit=limit + 1, before=before))
        return Response(
            {"transfers": [payments.payment_json(p) for p in page[:limit]], "more": len(page) > limit}
        )


class TransferView(APIView):
    """One payment you sent or received, by payment id: pending, forwarded, completed, failed, refunded."""

    permission_classes = [IsAuthenticated]

    @extend_schema(parameters=[_PAYMENT_ID], responses={200: answers.PaymentAnswer, **refusals(401, 404)})
    def get(self, request: Request, payment_id: str) -> Response:
        payment = selectors.payment_get_for_user(user=request.user.address, payment_id=payment_id.lower())
        if payment is None:
            raise ApiError("unknown_payment", "No payment of yours with this id.", http_status=404)
        return Response(payments.payment_json(payment))


class RedeemLinkView(APIView):
    """Redeem a link payment into your channel with its secret (the preimage)."""

    permission_classes = [IsAuthenticated]

    class InputSerializer(serializers.Serializer):
        preimage = HexBytesField(length=32)

        class Meta:
            ref_name = "RedeemLinkRequest"  # its name in the OpenAPI schema

    @extend_schema(
        parameters=[_PAYMENT_ID],
        request=InputSerializer,
        responses={200: answers.PaymentAnswer, **refusals(400, 401, 404, 409)},
    )
    def post(self, request: Request, payment_id: str) -> Response:
        body = self.InputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        payment = payments.link_redeem(
            redeemer=request.user.address,
            payment_id=payment_id.lower(),
            preimage=body.validated_data["preimage"],
        )
        return Response(payments.payment_json(payment))


class LinkStatusView(APIView):
    """A link's status for whoever holds its secret, before redeeming it (no login needed: the redeem
    screen shows it to a visitor who has no card yet). The secret travels in the body, never in a URL;
    a wrong secret is answered like an unknown link."""

    @extend_schema(
        parameters=[_PAYMENT_ID],
        request=RedeemLinkView.InputSerializer,
        responses={200: answers.LinkStatusAnswer, **refusals(400, 404)},
    )
    def post(self, request: Request, payment_id: str) -> Response:
        body = RedeemLinkView.InputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return Response(
            payments.link_status(payment_id=payment_id.lower(), preimage=body.validated_data["preimage"])
        )


class CancelTransferView(APIView):
    """Take back a payment nobody received (a link after it expired, or one not forwarded yet)."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        parameters=[_PAYMENT_ID],
        request=None,
        responses={200: answers.PaymentAnswer, **refusals(401, 404, 409)},
    )
    def post(self, request: Request, payment_id: str) -> Response:
        payment = payments.payment_cancel(sender=request.user.address, payment_id=payment_id.lower())
        return Response(payments.payment_json(payment))


class UserKeyView(APIView):
    """A user's public key (to encrypt a preimage to them), known once they opened a channel."""

    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: answers.UserKeyAnswer, **refusals(400, 401, 404)})
    def get(self, request: Request, address: str) -> Response:
        field = AddressField()
        try:
            checksummed = field.to_internal_value(address)
        except serializers.ValidationError:
            raise ApiError("invalid_input", "Not an address.") from None
        key = selectors.user_public_key(address=checksummed)
        if key is None:
            raise ApiError("unknown_user", "This address has no channel with the node.", http_status=404)
        return Response({"address": checksummed, "publicKey": key})
