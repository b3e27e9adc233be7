"""JSON forms of the protocol's values (plain dicts, ready for `json.dumps`).

Conventions, the same in both directions:
- keys are the camelCase names of docs/protocol.md (`channelAddress`, `processedDeposits`, ...);
- every uint256 (amounts, nonces, chain id, timeouts) is a canonical decimal string (`"0"`, `"1500"`;
  no sign, no leading zeros, no exponent), so no JavaScript number ever loses precision;
- addresses are EIP-55 checksummed (parsing also accepts single-case hex and normalises it);
- bytes are 0x-prefixed lowercase hex (parsing accepts either case).

Parsing is strict: a missing, unknown or ill-typed key raises `MalformedError` naming the field
(`transfers[0].balance[1]`); derived fields that are present (a transfer's `transferId` and
`initialStateHash`, a state's `merkleRoot`) must match what the core derives; a parsed channel state must
pass `invariants.check_state`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from connext.protocol import invariants
from connext.protocol.encoding import MAX_UINT256, normalize_address
from connext.protocol.errors import MalformedError
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

JsonDict = dict[str, Any]
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,77}")
_HEX = re.compile(r"0x(?:[0-9a-fA-F]{2})*")


def _object(value: object, field: str, keys: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise MalformedError("must be a JSON object", field=field or None)
    unknown = set(value) - keys
    if unknown:
        raise MalformedError(f"unknown keys {sorted(map(str, unknown))}", field=field or None)
    missing = keys - set(value)
    if missing:
        name = sorted(missing)[0]
        raise MalformedError("is missing", field=f"{field}.{name}" if field else name)
    return value


def _path(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def parse_uint(value: object, *, field: str) -> int:
    """A uint256 from its canonical decimal string."""
    if not isinstance(value, str) or not _DECIMAL.fullmatch(value):
        raise MalformedError("must be a uint256 as a canonical decimal string", field=field)
    number = int(value)
    if number > MAX_UINT256:
        raise MalformedError("is above 2**256 - 1", field=field)
    return number


def parse_bytes(value: object, *, field: str, length: int | None = None) -> bytes:
    """Bytes from 0x-hex; `length` fixes the size (32 for hashes and ids)."""
    if not isinstance(value, str) or not _HEX.fullmatch(value):
        raise MalformedError("must be 0x-prefixed hex with an even number of digits", field=field)
    raw = bytes.fromhex(value[2:])
    if length is not None and len(raw) != length:
        raise MalformedError(f"must be {length} bytes", field=field)
    return raw


def parse_address(value: object, *, field: str) -> str:
    return normalize_address(value, field=field)


def _list(value: object, field: str) -> list[Any]:
    if not isinstance(value, list):
        raise MalformedError("must be a JSON array", field=field)
    return value


def _pair(value: object, field: str) -> tuple[int, int]:
    items = _list(value, field)
    if len(items) != 2:
        raise MalformedError("must be a pair [a, b]", field=field)
    return parse_uint(items[0], field=f"{field}[0]"), parse_uint(items[1], field=f"{field}[1]")


def hex_bytes(raw: bytes) -> str:
    return "0x" + raw.hex()


def _pair_json(pair: tuple[int, int]) -> list[str]:
    return [str(pair[0]), str(pair[1])]


# -- transfers -------------------------------------------------------------------------------------

_TRANSFER_KEYS = frozenset(
    {
        "channelAddress",
        "transferId",
        "paymentId",
        "createNonce",
        "transferDefinition",
        "initiator",
        "responder",
        "assetId",
        "balance",
        "transferTimeout",
        "encodedState",
        "initialStateHash",
        "metaHash",
    }
)


def transfer_state_to_json(transfer: TransferState) -> JsonDict:
    return {
        "channelAddress": transfer.channel_address,
        "transferId": hex_bytes(transfer.transfer_id),
        "paymentId": hex_bytes(transfer.payment_id),
        "createNonce": str(transfer.create_nonce),
        "transferDefinition": transfer.definition,
        "initiator": transfer.initiator,
        "responder": transfer.responder,
        "assetId": transfer.asset_id,
        "balance": _pair_json(transfer.balance),
        "transferTimeout": str(transfer.transfer_timeout),
        "encodedState": hex_bytes(transfer.encoded_state),
        "initialStateHash": hex_bytes(transfer.initial_state_hash),
        "metaHash": hex_bytes(transfer.meta_hash),
    }


def transfer_state_from_json(value: object, *, field: str = "") -> TransferState:
    obj = _object(value, field, _TRANSFER_KEYS)
    transfer = TransferState(
        channel_address=parse_address(obj["channelAddress"], field=_path(field, "channelAddress")),
        payment_id=parse_bytes(obj["paymentId"], field=_path(field, "paymentId"), length=32),
        create_nonce=parse_uint(obj["createNonce"], field=_path(field, "createNonce")),
        definition=parse_address(obj["transferDefinition"], field=_path(field, "transferDefinition")),
        initiator=parse_address(obj["initiator"], field=_path(field, "initiator")),
        responder=parse_address(obj["responder"], field=_path(field, "responder")),
        asset_id=parse_address(obj["assetId"], field=_path(field, "assetId")),
        balance=_pair(obj["balance"], _path(field, "balance")),
        transfer_timeout=parse_uint(obj["transferTimeout"], field=_path(field, "transferTimeout")),
        encoded_state=parse_bytes(obj["encodedState"], field=_path(field, "encodedState")),
        meta_hash=parse_bytes(obj["metaHash"], field=_path(field, "metaHash"), length=32),
    )
    if parse_bytes(obj["transferId"], field=_path(field, "transferId"), length=32) != transfer.transfer_id:
        raise MalformedError(
            "does not match keccak256(TRANSFER_ID_TAG, channel, paymentId, createNonce)",
            field=_path(field, "transferId"),
        )
    stated_hash = parse_bytes(obj["initialStateHash"], field=_path(field, "initialStateHash"), length=32)
    if stated_hash != transfer.initial_state_hash:
        raise MalformedError("does not match keccak256(encodedState)", field=_path(field, "initialStateHash"))
    return transfer


# -- channel state ---------------------------------------------------------------------------------

_STATE_KEYS = frozenset(
    {
        "channelAddress",
        "chainId",
        "node",
        "user",
        "assetIds",
        "balances",
        "processedDeposits",
        "defundNonces",
        "timeout",
        "nonce",
        "merkleRoot",
        "transfers",
    }
)


def channel_state_to_json(state: ChannelState) -> JsonDict:
    """The state's struct fields plus its active transfers (`transfers`, not part of the hash)."""
    return {
        "channelAddress": state.channel_address,
        "chainId": str(state.chain_id),
        "node": state.node,
        "user": state.user,
        "assetIds": list(state.asset_ids),
        "balances": [_pair_json(pair) for pair in state.balances],
        "processedDeposits": [_pair_json(pair) for pair in state.processed_deposits],
        "defundNonces": [str(n) for n in state.defund_nonces],
        "timeout": str(state.timeout),
        "nonce": str(state.nonce),
        "merkleRoot": hex_bytes(state.merkle_root),
        "transfers": [transfer_state_to_json(transfer) for transfer in state.transfers],
    }


def channel_state_from_json(value: object) -> ChannelState:
    obj = _object(value, "", _STATE_KEYS)
    state = ChannelState(
        channel_address=parse_address(obj["channelAddress"], field="channelAddress"),
        chain_id=parse_uint(obj["chainId"], field="chainId"),
        node=parse_address(obj["node"], field="node"),
        user=parse_address(obj["user"], field="user"),
        asset_ids=tuple(
            parse_address(asset, field=f"assetIds[{i}]")
            for i, asset in enumerate(_list(obj["assetIds"], "assetIds"))
        ),
        balances=tuple(
            _pair(pair, f"balances[{i}]") for i, pair in enumerate(_list(obj["balances"], "balances"))
        ),
        processed_deposits=tuple(
            _pair(pair, f"processedDeposits[{i}]")
            for i, pair in enumerate(_list(obj["processedDeposits"], "processedDeposits"))
        ),
        defund_nonces=tuple(
            parse_uint(n, field=f"defundNonces[{i}]")
            for i, n in enumerate(_list(obj["defundNonces"], "defundNonces"))
        ),
        timeout=parse_uint(obj["timeout"], field="timeout"),
        nonce=parse_uint(obj["nonce"], field="nonce"),
        transfers=tuple(
            transfer_state_from_json(t, field=f"transfers[{i}]")
            for i, t in enumerate(_list(obj["transfers"], "transfers"))
        ),
    )
    if parse_bytes(obj["merkleRoot"], field="merkleRoot", length=32) != state.merkle_root:
        raise MalformedError("does not match the root of the active transfers", field="merkleRoot")
    invariants.check_state(state)
    return state


# -- updates ---------------------------------------------------------------------------------------

_COMMON_KEYS = frozenset({"type", "channelAddress", "nonce", "initiator"})
_UPDATE_KEYS = {
    "setup": _COMMON_KEYS | {"chainId", "node", "user", "timeout"},
    "deposit": _COMMON_KEYS | {"assetId", "totalDepositsNode", "totalDepositsUser"},
    "create": _COMMON_KEYS
    | {"assetId", "amount", "transferDefinition", "paymentId", "encodedState", "transferTimeout", "metaHash"},
    "resolve": _COMMON_KEYS | {"transferId", "encodedResolver"},
    "resume": _COMMON_KEYS | {"defunds", "droppedTransferIds"},
    "swap": _COMMON_KEYS | {"giveAssetId", "giveAmount", "takeAssetId", "takeAmount"},
}
_DEFUND_KEYS = frozenset({"assetId", "defundNonce", "toNode", "toUser"})


def asset_defund_to_json(defund: AssetDefund) -> JsonDict:
    return {
        "assetId": defund.asset_id,
        "defundNonce": str(defund.defund_nonce),
        "toNode": str(defund.payout[0]),
        "toUser": str(defund.payout[1]),
    }


def asset_defund_from_json(value: object, *, field: str) -> AssetDefund:
    obj = _object(value, field, _DEFUND_KEYS)
    return AssetDefund(
        asset_id=parse_address(obj["assetId"], field=_path(field, "assetId")),
        defund_nonce=parse_uint(obj["defundNonce"], field=_path(field, "defundNonce")),
        payout=(
            parse_uint(obj["toNode"], field=_path(field, "toNode")),
            parse_uint(obj["toUser"], field=_path(field, "toUser")),
        ),
    )


def _bytes32_list(value: object, field: str) -> tuple[bytes, ...]:
    return tuple(
        parse_bytes(item, field=f"{field}[{i}]", length=32) for i, item in enumerate(_list(value, field))
    )


def update_to_json(update: Update) -> JsonDict:
    common: JsonDict = {
        "channelAddress": update.channel_address,
        "nonce": str(update.nonce),
        "initiator": update.initiator,
    }
    if isinstance(update, SetupUpdate):
        return {
            "type": "setup",
            **common,
            "chainId": str(update.chain_id),
            "node": update.node,
            "user": update.user,
            "timeout": str(update.timeout),
        }
    if isinstance(update, DepositUpdate):
        return {
            "type": "deposit",
            **common,
            "assetId": update.asset_id,
            "totalDepositsNode": str(update.total_deposits_node),
            "totalDepositsUser": str(update.total_deposits_user),
        }
    if isinstance(update, CreateUpdate):
        return {
            "type": "create",
            **common,
            "assetId": update.asset_id,
            "amount": str(update.amount),
            "transferDefinition": update.definition,
            "paymentId": hex_bytes(update.payment_id),
            "encodedState": hex_bytes(update.encoded_state),
            "transferTimeout": str(update.transfer_timeout),
            "metaHash": hex_bytes(update.meta_hash),
        }
    if isinstance(update, ResumeUpdate):
        return {
            "type": "resume",
            **common,
            "defunds": [asset_defund_to_json(defund) for defund in update.defunds],
            "droppedTransferIds": [hex_bytes(transfer_id) for transfer_id in update.dropped_transfer_ids],
        }
    if isinstance(update, SwapUpdate):
        return {
            "type": "swap",
            **common,
            "giveAssetId": update.give_asset,
            "giveAmount": str(update.give_amount),
            "takeAssetId": update.take_asset,
            "takeAmount": str(update.take_amount),
        }
    return {
        "type": "resolve",
        **common,
        "transferId": hex_bytes(update.transfer_id),
        "encodedResolver": hex_bytes(update.encoded_resolver),
    }


def update_from_json(value: object) -> Update:
    if not isinstance(value, Mapping):
        raise MalformedError("an update must be a JSON object")
    kind = value.get("type")
    if not isinstance(kind, str) or kind not in _UPDATE_KEYS:  # {} or [] would not even hash
        raise MalformedError(f"must be one of {sorted(_UPDATE_KEYS)}", field="type")
    obj = _object(value, "", _UPDATE_KEYS[kind])
    channel_address = parse_address(obj["channelAddress"], field="channelAddress")
    nonce = parse_uint(obj["nonce"], field="nonce")
    initiator = parse_address(obj["initiator"], field="initiator")
    if kind == "setup":
        return SetupUpdate(
            channel_address=channel_address,
            nonce=nonce,
            initiator=initiator,
            chain_id=parse_uint(obj["chainId"], field="chainId"),
            node=parse_address(obj["node"], field="node"),
            user=parse_address(obj["user"], field="user"),
            timeout=parse_uint(obj["timeout"], field="timeout"),
        )
    if kind == "deposit":
        return DepositUpdate(
            channel_address=channel_address,
            nonce=nonce,
            initiator=initiator,
            asset_id=parse_address(obj["assetId"], field="assetId"),
            total_deposits_node=parse_uint(obj["totalDepositsNode"], field="totalDepositsNode"),
            total_deposits_user=parse_uint(obj["totalDepositsUser"], field="totalDepositsUser"),
        )
    if kind == "create":
        return CreateUpdate(
            channel_address=channel_address,
            nonce=nonce,
            initiator=initiator,
            asset_id=parse_address(obj["assetId"], field="assetId"),
            amount=parse_uint(obj["amount"], field="amount"),
            definition=parse_address(obj["transferDefinition"], field="transferDefinition"),
            payment_id=parse_bytes(obj["paymentId"], field="paymentId", length=32),
            encoded_state=parse_bytes(obj["encodedState"], field="encodedState"),
            transfer_timeout=parse_uint(obj["transferTimeout"], field="transferTimeout"),
            meta_hash=parse_bytes(obj["metaHash"], field="metaHash", length=32),
        )
    if kind == "resume":
        return ResumeUpdate(
            channel_address=channel_address,
            nonce=nonce,
            initiator=initiator,
            defunds=tuple(
                asset_defund_from_json(defund, field=f"defunds[{i}]")
                for i, defund in enumerate(_list(obj["defunds"], "defunds"))
            ),
            dropped_transfer_ids=_bytes32_list(obj["droppedTransferIds"], "droppedTransferIds"),
        )
    if kind == "swap":
        return SwapUpdate(
            channel_address=channel_address,
            nonce=nonce,
            initiator=initiator,
            give_asset=parse_address(obj["giveAssetId"], field="giveAssetId"),
            give_amount=parse_uint(obj["giveAmount"], field="giveAmount"),
            take_asset=parse_address(obj["takeAssetId"], field="takeAssetId"),
            take_amount=parse_uint(obj["takeAmount"], field="takeAmount"),
        )
    return ResolveUpdate(
        channel_address=channel_address,
        nonce=nonce,
        initiator=initiator,
        transfer_id=parse_bytes(obj["transferId"], field="transferId", length=32),
        encoded_resolver=parse_bytes(obj["encodedResolver"], field="encodedResolver"),
    )


# -- withdraw commitment, context ------------------------------------------------------------------

_COMMITMENT_KEYS = frozenset({"chainId", "channelAddress", "assetId", "recipient", "amount", "nonce"})


def withdraw_commitment_to_json(commitment: WithdrawCommitment) -> JsonDict:
    return {
        "chainId": str(commitment.chain_id),
        "channelAddress": commitment.channel_address,
        "assetId": commitment.asset_id,
        "recipient": commitment.recipient,
        "amount": str(commitment.amount),
        "nonce": str(commitment.nonce),
    }


def withdraw_commitment_from_json(value: object) -> WithdrawCommitment:
    obj = _object(value, "", _COMMITMENT_KEYS)
    return WithdrawCommitment(
        chain_id=parse_uint(obj["chainId"], field="chainId"),
        channel_address=parse_address(obj["channelAddress"], field="channelAddress"),
        asset_id=parse_address(obj["assetId"], field="assetId"),
        recipient=parse_address(obj["recipient"], field="recipient"),
        amount=parse_uint(obj["amount"], field="amount"),
        nonce=parse_uint(obj["nonce"], field="nonce"),
    )


_CONTEXT_KEYS = frozenset({"now", "definitions", "chainDeposits"})
_DISPUTE_KEYS = frozenset(
    {"stateHash", "defundExpiry", "chainTime", "defunds", "disputedTransfers", "defundedTransfers"}
)


def chain_dispute_to_json(dispute: ChainDispute) -> JsonDict:
    return {
        "stateHash": hex_bytes(dispute.state_hash),
        "defundExpiry": str(dispute.defund_expiry),
        "chainTime": str(dispute.chain_time),
        "defunds": [asset_defund_to_json(defund) for defund in dispute.defunds.values()],
        "disputedTransfers": [hex_bytes(h) for h in sorted(dispute.disputed_transfers)],
        "defundedTransfers": [hex_bytes(h) for h in sorted(dispute.defunded_transfers)],
    }


def chain_dispute_from_json(value: object, *, field: str = "chainDispute") -> ChainDispute:
    obj = _object(value, field, _DISPUTE_KEYS)
    defunds: dict[str, AssetDefund] = {}
    for i, item in enumerate(_list(obj["defunds"], f"{field}.defunds")):
        defund = asset_defund_from_json(item, field=f"{field}.defunds[{i}]")
        if defund.asset_id in defunds:
            raise MalformedError("each asset appears once", field=f"{field}.defunds[{i}].assetId")
        defunds[defund.asset_id] = defund
    return ChainDispute(
        state_hash=parse_bytes(obj["stateHash"], field=f"{field}.stateHash", length=32),
        defund_expiry=parse_uint(obj["defundExpiry"], field=f"{field}.defundExpiry"),
        chain_time=parse_uint(obj["chainTime"], field=f"{field}.chainTime"),
        defunds=defunds,
        disputed_transfers=frozenset(_bytes32_list(obj["disputedTransfers"], f"{field}.disputedTransfers")),
        defunded_transfers=frozenset(_bytes32_list(obj["defundedTransfers"], f"{field}.defundedTransfers")),
    )


def update_context_to_json(context: UpdateContext) -> JsonDict:
    """`chainDispute` is present only when the context carries one (the pinned vectors have none)."""
    out: JsonDict = {
        "now": str(context.now),
        "definitions": {address: kind.value for address, kind in context.definitions.items()},
        "chainDeposits": {asset: _pair_json(totals) for asset, totals in context.chain_deposits.items()},
    }
    if context.dispute is not None:
        out["chainDispute"] = chain_dispute_to_json(context.dispute)
    return out


def update_context_from_json(value: object) -> UpdateContext:
    with_dispute = isinstance(value, Mapping) and "chainDispute" in value
    keys = _CONTEXT_KEYS | {"chainDispute"} if with_dispute else _CONTEXT_KEYS
    obj = _object(value, "", keys)
    definitions_obj = obj["definitions"]
    deposits_obj = obj["chainDeposits"]
    if not isinstance(definitions_obj, Mapping):
        raise MalformedError("must be a JSON object", field="definitions")
    if not isinstance(deposits_obj, Mapping):
        raise MalformedError("must be a JSON object", field="chainDeposits")
    kinds = {kind.value: kind for kind in DefinitionKind}
    definitions: dict[str, DefinitionKind] = {}
    for address, kind in definitions_obj.items():
        if not isinstance(kind, str) or kind not in kinds:
            raise MalformedError(f"must be one of {sorted(kinds)}", field=f"definitions.{address}")
        definitions[parse_address(address, field="definitions")] = kinds[kind]
    return UpdateContext(
        now=parse_uint(obj["now"], field="now"),
        definitions=definitions,
        chain_deposits={
            parse_address(asset, field="chainDeposits"): _pair(totals, f"chainDeposits.{asset}")
            for asset, totals in deposits_obj.items()
        },
        dispute=chain_dispute_from_json(obj["chainDispute"]) if "chainDispute" in obj else None,
    )
