"""A user's side of the channel protocol for API tests: keys, the pure core and the REST API.

It holds the latest doubly signed state it has seen and builds, signs and checks updates with
`connext.protocol` exactly as a client must. (End-to-end tests use the real client SDK.)
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field, replace
from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct
from web3 import Web3

from connext.chain import channel_reads, disputes
from connext.protocol import serialization, signing, validation
from connext.protocol.definitions import WithdrawState
from connext.protocol.types import (
    ChannelState,
    CreateUpdate,
    DefinitionKind,
    DepositUpdate,
    ResolveUpdate,
    ResumeUpdate,
    SetupUpdate,
    Update,
    UpdateContext,
)

ETH = "0x0000000000000000000000000000000000000000"


@dataclass
class Wallet:
    client: Any  # django.test.Client
    w3: Web3
    key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    token: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    state: ChannelState | None = None
    # Both signatures on `state`, as the node answered them: what the wallet would show a node that
    # lost its records (POST /api/channel/reconcile).
    signatures: tuple[bytes, bytes] | None = None

    @property
    def account(self):
        return Account.from_key(self.key)

    @property
    def address(self) -> str:
        return self.account.address

    def headers(self) -> dict[str, str]:
        return {"HTTP_AUTHORIZATION": f"Bearer {self.token}"}

    def get(self, path: str, **params: Any):
        return self.client.get(path, params, **self.headers())

    def post(self, path: str, body: dict[str, Any]):
        return self.client.post(path, body, content_type="application/json", **self.headers())

    def fund(self, funder_key: str, amount: int = 10**18) -> None:
        """Gas money for the wallet's own transactions, from an anvil account."""
        self.send_eth(funder_key, self.address, amount)

    def send_eth(self, from_key: str, to: str, amount: int) -> None:
        sender = Account.from_key(from_key)
        signed = sender.sign_transaction(
            {
                "chainId": self.w3.eth.chain_id,
                "nonce": self.w3.eth.get_transaction_count(sender.address, "pending"),
                "to": to,
                "value": amount,
                "gas": 60_000,
                "maxFeePerGas": 10**11,
                "maxPriorityFeePerGas": 10**9,
            }
        )
        self.w3.eth.wait_for_transaction_receipt(self.w3.eth.send_raw_transaction(signed.raw_transaction))

    # -- session --------------------------------------------------------------------------------

    def log_in(self) -> None:
        challenge = self.client.get("/api/auth/nonce", {"address": self.address}).json()
        signature = self.account.sign_message(encode_defunct(text=challenge["message"])).signature.to_0x_hex()
        response = self.client.post(
            "/api/auth/token",
            {"address": self.address, "nonce": challenge["nonce"], "signature": signature},
            content_type="application/json",
        )
        assert response.status_code == 201, response.json()
        self.token = response.json()["token"]
        self.config = self.client.get("/api/config").json()

    @property
    def definitions(self) -> dict[str, DefinitionKind]:
        return {address: DefinitionKind(kind) for kind, address in self.config["transferDefinitions"].items()}

    def context(self, *, deposits: dict[str, tuple[int, int]] | None = None) -> UpdateContext:
        return UpdateContext(
            now=int(time.time()), definitions=self.definitions, chain_deposits=deposits or {}
        )

    def channel_address(self) -> str:
        from connext.chain.contracts import channel_address

        return channel_address(
            factory=self.config["contracts"]["ChannelFactory"],
            mastercopy=self.config["contracts"]["Channel"],
            node=self.config["nodeAddress"],
            user=self.address,
            chain_id=int(self.config["chainId"]),
        )

    # -- updates --------------------------------------------------------------------------------

    def sign(self, update: Update, context: UpdateContext | None = None) -> tuple[ChannelState, bytes]:
        return validation.initiate_update(self.state, update, self.key, context=context or self.context())

    def send(self, path: str, update: Update, signature: bytes):
        return self.post(
            path, {"update": serialization.update_to_json(update), "signature": "0x" + signature.hex()}
        )

    def accept(self, response, expected: ChannelState) -> None:
        """Check the node's countersignature on the state we derived, then adopt it."""
        body = response.json()
        assert response.status_code in (200, 201), body
        node_signature = bytes.fromhex(body["nodeSignature"][2:])
        assert signing.recover_signer(expected, node_signature) == expected.node
        self.state = expected
        self.signatures = (node_signature, bytes.fromhex(body["userSignature"][2:]))

    def open(self):
        update = SetupUpdate(
            channel_address=self.channel_address(),
            nonce=1,
            initiator=self.address,
            chain_id=int(self.config["chainId"]),
            node=self.config["nodeAddress"],
            user=self.address,
            timeout=int(self.config["disputeTimeout"]),
        )
        new, signature = validation.initiate_update(None, update, self.key, context=self.context())
        response = self.send("/api/channel", update, signature)
        if response.status_code in (200, 201):
            self.accept(response, new)
        return response

    def signed_state(self) -> dict[str, Any]:
        """The latest doubly signed state as the API takes it."""
        assert self.state is not None
        assert self.signatures is not None
        return {
            "state": serialization.channel_state_to_json(self.state),
            "nodeSignature": "0x" + self.signatures[0].hex(),
            "userSignature": "0x" + self.signatures[1].hex(),
        }

    def deposit_update(self, asset_id: str = ETH, *, claim: tuple[int, int] | None = None):
        """Propose crediting the chain's deposit totals (or `claim`ed ones)."""
        assert self.state is not None
        totals = channel_reads.deposit_totals(self.w3, self.state.channel_address, asset_id, block="latest")
        node_total, user_total = claim or (totals.node, totals.user)
        update = DepositUpdate(
            channel_address=self.state.channel_address,
            nonce=self.state.nonce + 1,
            initiator=self.address,
            asset_id=asset_id,
            total_deposits_node=node_total,
            total_deposits_user=user_total,
        )
        new, signature = self.sign(update, self.context(deposits={asset_id: (node_total, user_total)}))
        response = self.send("/api/channel/updates", update, signature)
        if response.status_code == 200:
            self.accept(response, new)
        return response

    def withdraw_update(self, amount: int, recipient: str, asset_id: str = ETH):
        assert self.state is not None
        nonce = self.state.nonce + 1
        unsigned = WithdrawState(
            channel_address=self.state.channel_address,
            asset_id=asset_id,
            recipient=recipient,
            amount=amount,
            nonce=nonce,
            initiator=self.address,
            responder=self.state.node,
            initiator_signature=b"",
        )
        commitment_signature = signing.sign_withdraw(unsigned.commitment(self.state.chain_id), self.key)
        withdraw = WithdrawState(**{**unsigned.__dict__, "initiator_signature": commitment_signature})
        update = CreateUpdate(
            channel_address=self.state.channel_address,
            nonce=nonce,
            initiator=self.address,
            asset_id=asset_id,
            amount=amount,
            definition=self.config["transferDefinitions"]["withdraw"],
            payment_id=secrets.token_bytes(32),
            encoded_state=withdraw.encode(),
            transfer_timeout=3 * 24 * 3600,
        )
        new, signature = self.sign(update)
        response = self.send("/api/channel/updates", update, signature)
        if response.status_code == 200:
            self.accept(response, new)
        return response

    def countersign_proposal(self, *, deposits: dict[str, tuple[int, int]] | None = None):
        """Validate the node's open proposal against our own state, then countersign it."""
        update, new, signature = self.sign_proposal(deposits=deposits)
        response = self.post(
            "/api/channel/countersign", {"nonce": str(new.nonce), "signature": "0x" + signature.hex()}
        )
        assert response.status_code == 200, response.json()
        self.state = new
        self.signatures = (bytes.fromhex(response.json()["nodeSignature"][2:]), signature)
        return update, new

    def sign_proposal(self, *, deposits: dict[str, tuple[int, int]] | None = None):
        """Validate and sign the node's open proposal without sending the signature (to send it as
        the `answer` of our next update). Returns (update, new state, our signature)."""
        channel = self.get("/api/channel").json()
        proposal = channel["proposal"]
        assert proposal is not None, channel
        update = serialization.update_from_json(proposal["update"])
        node_signature = bytes.fromhex(proposal["nodeSignature"][2:])
        context = self.context(deposits=deposits)
        if isinstance(update, ResolveUpdate | ResumeUpdate):  # the chain's own word on a past dispute
            context = replace(context, dispute=disputes.read_chain_dispute(self.w3, self.state, (ETH,)))
        new = validation.validate_update(self.state, update, node_signature, context=context)
        return update, new, signing.sign_state(new, self.key)

    def resolve_node_withdraw(self):
        """Resolve the node's active withdraw transfer with our commitment signature (the user's half)."""
        assert self.state is not None
        from connext.protocol.definitions import WithdrawResolver

        transfer = next(
            t
            for t in self.state.transfers
            if self.definitions.get(t.definition) is DefinitionKind.WITHDRAW
            and t.initiator == self.state.node
        )
        withdraw = WithdrawState.decode(transfer.encoded_state)
        signature = signing.sign_withdraw(withdraw.commitment(self.state.chain_id), self.key)
        update = ResolveUpdate(
            channel_address=self.state.channel_address,
            nonce=self.state.nonce + 1,
            initiator=self.address,
            transfer_id=transfer.transfer_id,
            encoded_resolver=WithdrawResolver(signature).encode(),
        )
        new, state_signature = self.sign(update)
        response = self.send("/api/channel/updates", update, state_signature)
        if response.status_code == 200:
            self.accept(response, new)
        return response

    def pay(
        self,
        recipient: str | None,
        amount: int,
        *,
        kind: str = "linked",
        preimage: bytes | None = None,
        expiry: int | None = None,
        meta: dict[str, Any] | None = None,
        asset_id: str = ETH,
        payment_id: bytes | None = None,
        transfer_timeout: int = 3600,
    ):
        """Create a transfer to the node for `recipient` (None: a link). Returns (response, payment id, preimage)."""
        from connext.protocol import meta as transfer_meta
        from connext.protocol.definitions import HashLockState, LinkedState
        from connext.protocol.encoding import keccak256

        assert self.state is not None
        preimage = preimage or secrets.token_bytes(32)
        lock_hash = keccak256(preimage)
        payment_id = payment_id or secrets.token_bytes(32)
        if kind == "linked":
            encoded = LinkedState(lock_hash).encode()
        elif kind == "hashlock":
            encoded = HashLockState(lock_hash, expiry or 0).encode()
        else:  # signed: `preimage` is unused; the signer is meta["signer"]
            from connext.protocol.definitions import SignedState

            encoded = SignedState((meta or {})["signer"], payment_id).encode()
        meta = {**({"recipient": recipient} if recipient else {}), **(meta or {})}
        update = CreateUpdate(
            channel_address=self.state.channel_address,
            nonce=self.state.nonce + 1,
            initiator=self.address,
            asset_id=asset_id,
            amount=amount,
            definition=self.config["transferDefinitions"][kind],
            payment_id=payment_id,
            encoded_state=encoded,
            transfer_timeout=transfer_timeout,
            meta_hash=transfer_meta.meta_hash(meta),
        )
        new, signature = self.sign(update)
        response = self.post(
            "/api/channel/updates",
            {
                "update": serialization.update_to_json(update),
                "signature": "0x" + signature.hex(),
                "meta": meta,
            },
        )
        if response.status_code == 200:
            self.accept(response, new)
        return response, "0x" + payment_id.hex(), preimage

    def resolve_incoming(
        self,
        payment_id: str,
        preimage: bytes = b"",
        *,
        resolver: bytes | None = None,
        answering: bool = False,
    ):
        """Resolve the node's transfer to us for `payment_id` with the preimage (or a given resolver).
        `answering`: the transfer is the node's open proposal, countersigned inside this update."""
        from connext.protocol.definitions import PreimageResolver

        answer = None
        if answering:
            _, proposed, answer_signature = self.sign_proposal()
            answer = {"nonce": str(proposed.nonce), "signature": "0x" + answer_signature.hex()}
            self.state = proposed
        assert self.state is not None
        transfer = next(t for t in self.state.transfers if "0x" + t.payment_id.hex() == payment_id)
        update = ResolveUpdate(
            channel_address=self.state.channel_address,
            nonce=self.state.nonce + 1,
            initiator=self.address,
            transfer_id=transfer.transfer_id,
            encoded_resolver=resolver if resolver is not None else PreimageResolver(preimage).encode(),
        )
        new, signature = self.sign(update)
        body = {"update": serialization.update_to_json(update), "signature": "0x" + signature.hex()}
        response = self.post("/api/channel/updates", {**body, **({"answer": answer} if answer else {})})
        if response.status_code == 200:
            self.accept(response, new)
        return response

    def proposal(self) -> dict[str, Any] | None:
        return self.get("/api/channel").json()["proposal"]
