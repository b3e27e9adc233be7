"""Typed errors of the protocol core.

Every rejection is a `ProtocolError` with a stable machine-readable `code` (part of the wire API: peers
and clients switch on it) and a human message. Codes never change meaning; new ones may be added.
"""

from __future__ import annotations

from typing import ClassVar


class ProtocolError(Exception):
    """An update, state, signature or message the protocol rejects."""

    code: ClassVar[str] = "protocol_error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        where = f" ({self.field})" if self.field else ""
        return f"{self.code}{where}: {self.message}"


class MalformedError(ProtocolError):
    """Input that is not well formed: wrong type, bad hex, bad checksum, non-canonical encoding."""

    code = "malformed"


class StaleNonceError(ProtocolError):
    """The update's nonce is not above the current state's: the peer is behind."""

    code = "stale_nonce"


class NonceGapError(ProtocolError):
    """The update's nonce skips ahead: this side is missing states and must sync first."""

    code = "nonce_gap"


class WrongChannelError(ProtocolError):
    """The update names another channel than the state it is applied to."""

    code = "wrong_channel"


class ChannelExistsError(ProtocolError):
    """A setup update on a channel that already has a state."""

    code = "channel_exists"


class NoChannelError(ProtocolError):
    """An update other than setup on a channel with no state."""

    code = "no_channel"


class InvalidSetupError(ProtocolError):
    """A setup update with unusable parties or chain id."""

    code = "invalid_setup"


class BadTimeoutError(ProtocolError):
    """A dispute or transfer timeout of zero or above the protocol's maximum."""

    code = "bad_timeout"


class UnauthorizedError(ProtocolError):
    """The initiator may not make this update (not a party, or not the transfer's responder)."""

    code = "unauthorized"


class BadSignatureError(ProtocolError):
    """A signature that is malformed, not low-s, or not by the expected signer."""

    code = "bad_signature"


class AmountOutOfRangeError(ProtocolError):
    """An amount that is zero where it must be positive, negative, or above 2**256 - 1."""

    code = "amount_out_of_range"


class InsufficientBalanceError(ProtocolError):
    """A balance below the amount an update takes from it (the initiator's for a create, either side's
    for a swap: the field names which)."""

    code = "insufficient_balance"


class UnknownAssetError(ProtocolError):
    """A transfer or swap in an asset the channel holds no deposit of."""

    code = "unknown_asset"


class SameAssetError(ProtocolError):
    """A swap whose two assets are the same one."""

    code = "same_asset"


class UnknownDefinitionError(ProtocolError):
    """A transfer definition address that is not a known definition on this chain."""

    code = "unknown_definition"


class BadTransferStateError(ProtocolError):
    """The transfer's encoded state fails its definition's create checks or the channel's."""

    code = "bad_transfer_state"


class DuplicateTransferError(ProtocolError):
    """A transfer id that is already active in the channel."""

    code = "duplicate_transfer"


class UnknownTransferError(ProtocolError):
    """A resolve for a transfer id that is not active in the channel."""

    code = "unknown_transfer"


class BadResolverError(ProtocolError):
    """A resolver that does not satisfy the transfer's condition (wrong preimage or signature)."""

    code = "bad_resolver"


class ExpiredError(ProtocolError):
    """A hashlock past (or, at create, at) its expiry."""

    code = "expired"


class BadDepositError(ProtocolError):
    """A deposit update whose totals are below what the channel already credited."""

    code = "bad_deposit"


class NoNewDepositError(ProtocolError):
    """A deposit update that credits nothing."""

    code = "no_new_deposit"


class DepositExceedsChainError(ProtocolError):
    """A deposit update crediting more than the chain shows."""

    code = "deposit_exceeds_chain"


class DisputeNotOverError(ProtocolError):
    """A resume while the chain shows no dispute of the channel, or before its defund window ended."""

    code = "dispute_not_over"


class DisputeMismatchError(ProtocolError):
    """An update that disagrees with what the chain shows after a dispute: another disputed state, other
    defund nonces or payouts, a transfer dropped that the chain did not pay out (or one it paid out left
    in), a transfer disputed on chain resolved off chain."""

    code = "dispute_mismatch"


class InvariantViolationError(ProtocolError):
    """A state that breaks a channel invariant (a bug in a rule, or a forged state)."""

    code = "invariant_violated"


class BadCiphertextError(ProtocolError):
    """A ciphertext that does not decrypt with the key: altered, truncated, or sealed for another key."""

    code = "bad_ciphertext"


ERROR_CLASSES: tuple[type[ProtocolError], ...] = (
    MalformedError,
    StaleNonceError,
    NonceGapError,
    WrongChannelError,
    ChannelExistsError,
    NoChannelError,
    InvalidSetupError,
    BadTimeoutError,
    UnauthorizedError,
    BadSignatureError,
    AmountOutOfRangeError,
    InsufficientBalanceError,
    UnknownAssetError,
    UnknownDefinitionError,
    BadTransferStateError,
    DuplicateTransferError,
    UnknownTransferError,
    BadResolverError,
    ExpiredError,
    BadDepositError,
    NoNewDepositError,
    DepositExceedsChainError,
    DisputeNotOverError,
    DisputeMismatchError,
    InvariantViolationError,
    BadCiphertextError,
    SameAssetError,
)

ERROR_CODES: frozenset[str] = frozenset(cls.code for cls in ERROR_CLASSES)
