"""The pure protocol core: channel state, canonical hashing, signing, update rules and validation.

No I/O, no clock, no randomness, no Django: callers pass time, chain readings and keys in. The node and
every client run the same rules, so both sides derive the same state from the same update.
"""

from connext.protocol.encoding import (
    CHANNEL_STATE_TAG,
    MAX_UINT256,
    RESOLVER_TAG,
    TRANSFER_ID_TAG,
    TRANSFER_STATE_TAG,
    WITHDRAW_TAG,
    ZERO_ADDRESS,
    ZERO_BYTES32,
    channel_state_hash,
    keccak256,
    normalize_address,
    receipt_digest,
    resolver_hash,
    transfer_hash,
    transfer_id,
    withdraw_hash,
)
from connext.protocol.errors import ERROR_CODES, MalformedError, ProtocolError
from connext.protocol.merkle import merkle_proof, merkle_root, verify_merkle_proof
from connext.protocol.signing import (
    Signer,
    recover_signer,
    sign_state,
    verify_state_signatures,
)
from connext.protocol.types import (
    AssetDefund,
    ChainDispute,
    ChannelState,
    CreateUpdate,
    DefinitionKind,
    DepositUpdate,
    ResolveUpdate,
    ResumeUpdate,
    SetupUpdate,
    SwapUpdate,
    TransferState,
    Update,
    UpdateContext,
    WithdrawCommitment,
)
from connext.protocol.updates import apply_update
from connext.protocol.validation import countersign, initiate_update, validate_update

__all__ = [
    "CHANNEL_STATE_TAG",
    "ERROR_CODES",
    "MAX_UINT256",
    "RESOLVER_TAG",
    "TRANSFER_ID_TAG",
    "TRANSFER_STATE_TAG",
    "WITHDRAW_TAG",
    "ZERO_ADDRESS",
    "ZERO_BYTES32",
    "AssetDefund",
    "ChainDispute",
    "ChannelState",
    "CreateUpdate",
    "DefinitionKind",
    "DepositUpdate",
    "MalformedError",
    "ProtocolError",
    "ResolveUpdate",
    "ResumeUpdate",
    "SetupUpdate",
    "Signer",
    "SwapUpdate",
    "TransferState",
    "Update",
    "UpdateContext",
    "WithdrawCommitment",
    "apply_update",
    "channel_state_hash",
    "countersign",
    "initiate_update",
    "keccak256",
    "merkle_proof",
    "merkle_root",
    "normalize_address",
    "receipt_digest",
    "recover_signer",
    "resolver_hash",
    "sign_state",
    "transfer_hash",
    "transfer_id",
    "validate_update",
    "verify_merkle_proof",
    "verify_state_signatures",
    "withdraw_hash",
]
