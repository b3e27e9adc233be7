"""The shapes of the API's answers, for the OpenAPI schema.

The views build their answers as plain dicts (the socket requests share them, and the update path is
hot), so these serializers only describe them; `tests/integration/test_api_contract.py` checks every
answer the live node gives against them, so the two cannot drift apart.
"""

from __future__ import annotations

from drf_spectacular.utils import inline_serializer
from rest_framework import serializers

from channels_app.api.fields import AddressField, HexBytesField, WeiField
from channels_app.models import Channel, Payment, Withdrawal


class ProposalAnswer(serializers.Serializer):
    update = serializers.DictField(help_text="The update the node proposes (the protocol's JSON).")
    nodeSignature = HexBytesField(length=65)
    meta = serializers.DictField()

    class Meta:
        ref_name = "Proposal"


class SignedStateAnswer(serializers.Serializer):
    state = serializers.DictField(help_text="The channel state both signed (the protocol's JSON).")
    nodeSignature = HexBytesField(length=65)
    userSignature = HexBytesField(length=65)

    class Meta:
        ref_name = "SignedState"


class ChannelAnswer(SignedStateAnswer):
    channelAddress = AddressField()
    status = serializers.ChoiceField(choices=Channel.Status.choices)
    deployed = serializers.BooleanField()
    proposal = ProposalAnswer(allow_null=True, help_text="The node's open proposal, to countersign.")
    fenced = serializers.BooleanField(
        help_text="The node signs nothing for this channel until you show your latest signed state"
        " (POST /api/channel/reconcile): its records were found behind what it had signed."
    )

    class Meta:
        ref_name = "Channel"


class ReconcileAnswer(ChannelAnswer):
    adopted = serializers.BooleanField(help_text="Your state replaced the node's older record.")
    waitingFor = serializers.ChoiceField(
        choices=["chain", "state"],
        allow_null=True,
        help_text="Why the channel is still fenced: the node is still reading the chain (retry soon),"
        " or the chain shows the channel at a later nonce than the state shown.",
    )

    class Meta:
        ref_name = "Reconcile"


class ChannelUpdateRecordAnswer(serializers.Serializer):
    nonce = WeiField()
    update = serializers.DictField()
    stateHash = HexBytesField(length=32)
    nodeSignature = HexBytesField(length=65)
    userSignature = HexBytesField(length=65)

    class Meta:
        ref_name = "ChannelUpdateRecord"


class ChannelHistoryAnswer(serializers.Serializer):
    updates = ChannelUpdateRecordAnswer(many=True)

    class Meta:
        ref_name = "ChannelHistory"


class ConfigAnswer(serializers.Serializer):
    chainId = WeiField()
    nodeAddress = AddressField()
    contracts = serializers.DictField(child=AddressField())
    transferDefinitions = serializers.DictField(child=AddressField(), help_text="kind -> definition")
    supportedAssets = serializers.ListField(child=AddressField())
    disputeTimeout = WeiField(help_text="Seconds.")
    chainRpcUrl = serializers.CharField()
    limits = inline_serializer(
        "ClientLimits",
        {
            "socketRequestsInFlight": serializers.IntegerField(
                help_text="An account's socket requests running at once; more are answered 429."
            ),
            "pace": serializers.CharField(help_text="An account's pace (FAIR_SHARE), e.g. 10/second."),
            "burst": serializers.IntegerField(help_text="Requests back to back after a quiet spell."),
        },
    )

    class Meta:
        ref_name = "Config"


class FractionAnswer(serializers.Serializer):
    numerator = WeiField()
    denominator = WeiField()

    class Meta:
        ref_name = "Fraction"


class SwapRateAnswer(serializers.Serializer):
    giveAssetId = AddressField()
    takeAssetId = AddressField()
    baseAssetId = AddressField(help_text="The pair's base asset: what its limits are counted in.")
    rate = FractionAnswer(
        help_text="The node's offer: take base units per give base unit (the mid less the spread)."
        " It pays floor(give * numerator / denominator)."
    )
    mid = FractionAnswer(help_text="The source's mid price, take base units per give base unit.")
    spreadBps = serializers.IntegerField()
    maxGive = WeiField(help_text="The most one swap may give in this direction.")
    maxPerSwap = WeiField(help_text="Base units of the base asset one swap may move.")
    maxPerDay = WeiField(help_text="Base units of the base asset one account may move in 24 hours.")
    source = serializers.ChoiceField(choices=["fixed", "feed", "pool"])
    updatedAt = serializers.IntegerField(help_text="Unix seconds the source's price is from.")
    stale = serializers.BooleanField(help_text="Too old to swap at (`stale_rate`) until it is read again.")

    class Meta:
        ref_name = "SwapRate"


class SwapRatesAnswer(serializers.Serializer):
    rates = SwapRateAnswer(many=True)
    toleranceBps = serializers.IntegerField(
        help_text="A swap taking less than the offer by more than this is refused (`below_tolerance`)."
    )
    staleSeconds = serializers.IntegerField()

    class Meta:
        ref_name = "SwapRates"


class SwapPrepareAnswer(serializers.Serializer):
    needed = WeiField(help_text="How much more of the take asset the node needs in the channel (0: none).")
    requested = serializers.BooleanField(help_text="The node queued a deposit now (else one is on its way).")
    transactionId = serializers.IntegerField(allow_null=True)

    class Meta:
        ref_name = "SwapPrepareAnswer"


class CollateralAnswer(serializers.Serializer):
    requested = serializers.BooleanField()
    transactionId = serializers.IntegerField(allow_null=True)

    class Meta:
        ref_name = "CollateralRequested"


class WithdrawalAnswer(serializers.Serializer):
    transferId = HexBytesField(length=32)
    channelAddress = AddressField()
    assetId = AddressField()
    recipient = AddressField()
    amount = WeiField()
    nonce = WeiField()
    status = serializers.ChoiceField(choices=Withdrawal.Status.choices)
    transactionHash = serializers.CharField(allow_blank=True, help_text="Empty until it is sent.")

    class Meta:
        ref_name = "Withdrawal"


class WithdrawalsAnswer(serializers.Serializer):
    withdrawals = WithdrawalAnswer(many=True)

    class Meta:
        ref_name = "Withdrawals"


class PaymentAnswer(serializers.Serializer):
    paymentId = HexBytesField(length=32)
    kind = serializers.CharField(help_text="linked, hashlock or signed")
    sender = AddressField()
    recipient = AddressField(allow_null=True, help_text="None for a link payment.")
    assetId = AddressField()
    amount = WeiField()
    status = serializers.ChoiceField(choices=Payment.Status.choices)
    failure = serializers.CharField(allow_null=True)
    meta = serializers.DictField()
    createdAt = serializers.DateTimeField()
    updatedAt = serializers.DateTimeField()

    class Meta:
        ref_name = "Payment"


class LinkStatusAnswer(serializers.Serializer):
    paymentId = HexBytesField(length=32)
    status = serializers.ChoiceField(
        choices=["pending", "expired", "redeemed", "completed", "refunded", "failed"],
        help_text="pending: it can be redeemed; expired: too late, it goes back to its sender; "
        "redeemed (completed once paid out): somebody claimed it; refunded, failed: back to its sender.",
    )
    assetId = AddressField()
    amount = WeiField()
    expiresAt = serializers.IntegerField(allow_null=True, help_text="unix seconds, or none")

    class Meta:
        ref_name = "LinkStatus"


class PaymentPageAnswer(serializers.Serializer):
    transfers = PaymentAnswer(many=True)
    more = serializers.BooleanField(help_text="Older payments remain: ask again with `before`.")

    class Meta:
        ref_name = "PaymentPage"


class UserKeyAnswer(serializers.Serializer):
    address = AddressField()
    publicKey = HexBytesField(help_text="Uncompressed secp256k1 public key (ECIES target).")

    class Meta:
        ref_name = "UserKey"
