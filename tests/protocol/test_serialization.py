"""JSON forms round-trip and parsing rejects malformed input with an error naming the field."""

from __future__ import annotations

import contextlib
import copy
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connext.protocol import serialization as sz
from connext.protocol.encoding import keccak256
from connext.protocol.errors import MalformedError, ProtocolError
from connext.protocol.types import ChannelState, Update, WithdrawCommitment
from connext.protocol.updates import apply_update
from tests.protocol import protocol_helpers as h
from tests.protocol.strategies import PROTOCOL_SETTINGS, withdraw_commitments

PREIMAGE = h.preimage_for("json")


def _state_with_transfers() -> ChannelState:
    state = h.funded_state()
    for amount in (1, 2, 3):
        update = h.linked_create(state, initiator=h.USER.address, amount=amount, preimage=PREIMAGE)
        state = apply_update(state, update, context=h.context())
    return state


def _updates() -> list[Update]:
    state = _state_with_transfers()
    return [
        h.setup_update(),
        h.deposit_update(state, node=5, user=7),
        h.linked_create(state, initiator=h.NODE.address, amount=11, preimage=PREIMAGE),
        h.resolve_update(
            state, transfer_id=state.transfers[0].transfer_id, initiator=h.NODE.address, resolver=PREIMAGE
        ),
        h.swap_update(state, initiator=h.USER.address, give_amount=13, take_amount=17),
    ]


def test_channel_state_round_trips_through_json_text() -> None:
    state = _state_with_transfers()
    document = json.loads(json.dumps(sz.channel_state_to_json(state)))
    parsed = sz.channel_state_from_json(document)
    assert parsed == state
    assert parsed.state_hash == state.state_hash


def test_amounts_are_decimal_strings_and_addresses_checksummed() -> None:
    document = sz.channel_state_to_json(_state_with_transfers())
    assert document["balances"] == [[str(10**18), str(10**18 - 6)]]
    assert document["nonce"] == "5"
    assert document["node"] == h.NODE.address
    assert document["transfers"][0]["paymentId"].startswith("0x")


@pytest.mark.parametrize("update", _updates(), ids=lambda u: type(u).__name__)
def test_updates_round_trip(update: Update) -> None:
    assert sz.update_from_json(json.loads(json.dumps(sz.update_to_json(update)))) == update


@PROTOCOL_SETTINGS
@given(withdraw_commitments)
def test_withdraw_commitments_round_trip(commitment: WithdrawCommitment) -> None:
    assert sz.withdraw_commitment_from_json(sz.withdraw_commitment_to_json(commitment)) == commitment


def test_context_round_trips() -> None:
    context = h.context(deposits={h.ETH: (1, 2)})
    parsed = sz.update_context_from_json(json.loads(json.dumps(sz.update_context_to_json(context))))
    assert parsed == context


def test_lowercase_addresses_are_normalised() -> None:
    document = sz.channel_state_to_json(_state_with_transfers())
    document["node"] = document["node"].lower()
    assert sz.channel_state_from_json(document).node == h.NODE.address


def _mutated(path: list[Any], value: object) -> dict[str, Any]:
    document = copy.deepcopy(sz.channel_state_to_json(_state_with_transfers()))
    target: Any = document
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return document


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (["nonce"], 5, "nonce"),
        (["nonce"], "05", "nonce"),
        (["nonce"], "-5", "nonce"),
        (["nonce"], "5.0", "nonce"),
        (["nonce"], "1e3", "nonce"),
        (["chainId"], str(2**256), "chainId"),
        (["node"], "0x1234", "node"),
        (["user"], "0xaBAbabababababababababababababababababab", "user"),
        (["assetIds"], "0x00", "assetIds"),
        (["balances", 0], ["1"], "balances[0]"),
        (["balances", 0, 1], "x", "balances[0][1]"),
        (["merkleRoot"], "0x" + "00" * 32, "merkleRoot"),
        (["merkleRoot"], "0x123", "merkleRoot"),
        (["transfers", 1, "transferId"], "0x" + "11" * 32, "transfers[1].transferId"),
        (["transfers", 1, "initialStateHash"], "0x" + "11" * 32, "transfers[1].initialStateHash"),
        (["transfers", 2, "encodedState"], "0xzz", "transfers[2].encodedState"),
        (["transfers", 0, "metaHash"], "0x00", "transfers[0].metaHash"),
        (["transfers", 0, "balance"], KeyError, "transfers[0].balance"),
        (["timeout"], KeyError, "timeout"),
    ],
)
def test_malformed_state_json_names_the_field(path: list[Any], value: object, field: str) -> None:
    with pytest.raises(MalformedError) as raised:
        sz.channel_state_from_json(_mutated(path, value))
    assert raised.value.field == field


def test_unknown_keys_are_rejected() -> None:
    document = sz.channel_state_to_json(_state_with_transfers())
    document["stateHash"] = "0x00"
    with pytest.raises(MalformedError):
        sz.channel_state_from_json(document)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d.update(type="burn"), "type"),
        (lambda d: d.update(type={}), "type"),  # unhashable: once a TypeError (a 500 at the node)
        (lambda d: d.update(type=["create"]), "type"),
        (lambda d: d.update(amount="-1"), "amount"),
        (lambda d: d.update(paymentId="0x" + "00" * 31), "paymentId"),
        (lambda d: d.update(transferDefinition=None), "transferDefinition"),
        (lambda d: d.pop("metaHash"), "metaHash"),
    ],
)
def test_malformed_update_json_names_the_field(mutate: Any, field: str) -> None:
    state = h.funded_state()
    document = sz.update_to_json(
        h.linked_create(state, initiator=h.USER.address, amount=1, preimage=PREIMAGE)
    )
    mutate(document)
    with pytest.raises(MalformedError) as raised:
        sz.update_from_json(document)
    assert raised.value.field == field


def test_update_must_be_an_object() -> None:
    with pytest.raises(MalformedError):
        sz.update_from_json(["setup"])


@pytest.mark.parametrize("kind", ["magic", {}, ["linked"]])
def test_context_rejects_unknown_definition_kinds(kind: object) -> None:
    with pytest.raises(MalformedError):
        sz.update_context_from_json({"now": "1", "definitions": {h.LINKED: kind}, "chainDeposits": {}})


def test_parse_bytes_accepts_uppercase_hex() -> None:
    assert sz.parse_bytes("0xABCD", field="x") == bytes.fromhex("abcd")
    assert sz.parse_bytes("0x" + keccak256(b"").hex().upper(), field="x", length=32) == keccak256(b"")


# -- any JSON at all: parsed, or refused with a typed error (never a TypeError, KeyError, ...) --------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def _documents() -> list[tuple[str, Any, Any]]:
    """(name, a valid JSON document, its parser) for every JSON form the protocol reads."""
    state = _state_with_transfers()
    return [
        ("state", sz.channel_state_to_json(state), sz.channel_state_from_json),
        ("transfer", sz.transfer_state_to_json(state.transfers[0]), sz.transfer_state_from_json),
        *[(f"update:{type(u).__name__}", sz.update_to_json(u), sz.update_from_json) for u in _updates()],
        ("context", sz.update_context_to_json(h.context()), sz.update_context_from_json),
    ]


def _parses_or_is_refused(parse: Any, document: Any) -> None:
    with contextlib.suppress(ProtocolError):  # anything else fails the test
        parse(document)


@pytest.mark.parametrize(("name", "document", "parse"), _documents(), ids=[d[0] for d in _documents()])
@PROTOCOL_SETTINGS
@given(data=st.data())
def test_a_document_with_any_json_in_one_place_is_parsed_or_refused_with_a_protocol_error(
    name: str, document: Any, parse: Any, data: st.DataObject
) -> None:
    """The node parses what clients send and a client what the node sends: a peer can put any JSON
    anywhere. One value replaced (at any depth) or added must never raise anything but the typed
    error the API turns into a 400."""
    mutated = copy.deepcopy(document)
    target = mutated
    while True:  # walk down to a random container
        keys = list(target) if isinstance(target, dict) else list(range(len(target)))
        if not keys:
            break
        key = data.draw(st.sampled_from(keys))
        if not isinstance(target[key], dict | list) or not data.draw(st.booleans()):
            break
        target = target[key]
    if isinstance(target, dict) and data.draw(st.booleans()):
        target[data.draw(st.text(max_size=8))] = data.draw(JSON_VALUES)  # a key of its own
    elif keys:
        target[key] = data.draw(JSON_VALUES)
    _parses_or_is_refused(parse, mutated)


@PROTOCOL_SETTINGS
@given(document=JSON_VALUES)
def test_any_json_value_at_all_is_parsed_or_refused_with_a_protocol_error(document: Any) -> None:
    for _, _, parse in _documents():
        _parses_or_is_refused(parse, document)
