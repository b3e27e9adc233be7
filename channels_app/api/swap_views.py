"""The node's swap offer: its rates per direction, its tolerance and staleness limit."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from channels_app.api import answers
from channels_app.api.channel_views import _own_channel
from channels_app.api.fields import AddressField, WeiField
from channels_app.api.schema import refusals
from channels_app.services import swap_collateral, swaps


class SwapRatesView(APIView):
    """Both directions of every pair the node swaps, at its current rate (public: a rate is an offer to
    anyone with a channel). A swap is one update at these amounts (`swap`); the socket pushes
    `swap.rates` when a price moves."""

    @extend_schema(responses={200: answers.SwapRatesAnswer, **refusals()})
    def get(self, request: Request) -> Response:
        return Response(swaps.rates_json())


class SwapPrepareView(APIView):
    """Check a swap you are about to send against the node's offer (the same refusals as the update)
    and, when the node holds less of what you take than the swap pays, have it deposit first: 202
    with the deposit's transaction record, then the node proposes crediting it (countersign it) and
    the swap can go. 200 when the node holds enough already."""

    permission_classes = [IsAuthenticated]

    class InputSerializer(serializers.Serializer):
        giveAssetId = AddressField()
        giveAmount = WeiField()
        takeAssetId = AddressField()
        takeAmount = WeiField()

        class Meta:
            ref_name = "SwapPrepare"

    @extend_schema(
        request=InputSerializer,
        responses={
            200: answers.SwapPrepareAnswer,
            202: answers.SwapPrepareAnswer,
            **refusals(400, 401, 404, 409, 503),
        },
    )
    def post(self, request: Request) -> Response:
        body = self.InputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        channel = _own_channel(request)
        data = body.validated_data
        short, record = swap_collateral.swap_prepare(
            user=request.user.address,
            channel_address=channel.address,
            terms=swaps.Terms(
                give_asset=data["giveAssetId"],
                give_amount=data["giveAmount"],
                take_asset=data["takeAssetId"],
                take_amount=data["takeAmount"],
            ),
        )
        return Response(
            {
                "needed": str(short),
                "requested": record is not None,
                "transactionId": record.pk if record else None,
            },
            status=status.HTTP_202_ACCEPTED if short else status.HTTP_200_OK,
        )
