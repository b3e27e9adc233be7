"""The login message and its signature: what any wallet's personal_sign produces."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from connext.protocol import auth
from connext.protocol.errors import BadSignatureError, MalformedError

KEY = bytes.fromhex("42" * 32)
NODE = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8"


def test_the_login_message_names_node_chain_and_nonce():
    message = auth.login_message(node_address=NODE, chain_id=5, nonce="abc123")

    assert message == (
        "Log in to the connext-py node\nnode: 0x70997970C51812dc3A010C7d01b50e0d17dc79C8\nchain: 5\nnonce: abc123"
    )


def test_our_login_signature_is_what_eth_account_signs_and_recovers():
    message = auth.login_message(node_address=NODE, chain_id=31337, nonce="ff00")
    account = Account.from_key(KEY)

    ours = auth.sign_login(message, KEY)

    assert ours == bytes(account.sign_message(encode_defunct(text=message)).signature)
    assert auth.recover_login_signer(message, ours) == account.address


def test_a_signature_over_another_nonce_recovers_someone_else():
    account = Account.from_key(KEY)
    signed = auth.sign_login(auth.login_message(node_address=NODE, chain_id=1, nonce="a1"), KEY)

    assert (
        auth.recover_login_signer(auth.login_message(node_address=NODE, chain_id=1, nonce="a2"), signed)
        != account.address
    )


@pytest.mark.parametrize("nonce", ["", "x" * 65, "has space", "new\nline"])
def test_malformed_nonces_are_refused(nonce):
    with pytest.raises(MalformedError):
        auth.login_message(node_address=NODE, chain_id=1, nonce=nonce)


def test_a_truncated_signature_is_a_bad_signature():
    with pytest.raises(BadSignatureError):
        auth.recover_login_signer("hello", b"\x01" * 64)
