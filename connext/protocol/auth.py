"""Login: a client proves it holds an address's key by signing a node-issued nonce.

The message is plain text so a wallet can show it; it names the node and the chain so a signature
for one node or chain is worthless at another. Signed EIP-191 "personal sign" over the text
(what `eth_account.messages.encode_defunct(text=...)` signs).
"""

from __future__ import annotations

from connext.protocol import encoding
from connext.protocol.errors import MalformedError
from connext.protocol.signing import Signer, as_signer, recover_digest

LOGIN_TITLE = "Log in to the connext-py node"
MAX_NONCE_LENGTH = 64


def login_message(*, node_address: str, chain_id: int, nonce: str) -> str:
    if not nonce or len(nonce) > MAX_NONCE_LENGTH or not nonce.isalnum():
        raise MalformedError("a login nonce is 1 to 64 letters and digits", field="nonce")
    node = encoding.normalize_address(node_address, field="node_address")
    return f"{LOGIN_TITLE}\nnode: {node}\nchain: {chain_id}\nnonce: {nonce}"


def login_digest(message: str) -> bytes:
    body = message.encode("utf-8")
    return encoding.keccak256(b"\x19Ethereum Signed Message:\n" + str(len(body)).encode("ascii") + body)


def sign_login(message: str, key: Signer | bytes) -> bytes:
    return as_signer(key).sign_digest(login_digest(message))


def recover_login_signer(message: str, signature: bytes) -> str:
    """The address that signed the login `message`; raises `bad_signature` for a malformed one."""
    return recover_digest(login_digest(message), signature)
