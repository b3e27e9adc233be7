// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {MessageHashUtils} from "@openzeppelin/contracts/utils/cryptography/MessageHashUtils.sol";
import {ChannelHashes} from "../lib/ChannelTypes.sol";
import {DefinitionBase} from "./DefinitionBase.sol";

/// The off-chain half of a withdraw: locks the amount until the responder countersigns the withdraw
/// commitment; the funds then leave through `Channel.withdraw`, so a countersigned withdraw resolves to [0, 0].
/// State `(address channelAddress, address assetId, address recipient, uint256 amount, uint256 nonce,
/// address initiator, address responder, bytes initiatorSignature)`, resolver `(bytes responderSignature)`.
contract WithdrawTransfer is DefinitionBase {
    struct WithdrawState {
        address channelAddress;
        address assetId;
        address recipient;
        uint256 amount;
        uint256 nonce;
        address initiator;
        address responder;
        bytes initiatorSignature;
    }

    error AmountMismatch();
    error InvalidInitiatorSignature();
    error InvalidResponderSignature();

    function create(uint256[2] calldata balance, bytes calldata encodedState) external view returns (bool) {
        _checkInitialBalance(balance);
        WithdrawState memory state = _decodeState(encodedState);
        if (state.amount != balance[0]) revert AmountMismatch();
        _checkSigner(withdrawHash(state), state.initiatorSignature, state.initiator, false);
        return true;
    }

    function resolve(
        uint256[2] calldata balance,
        bytes calldata encodedState,
        bytes calldata encodedResolver
    ) external view returns (uint256[2] memory) {
        WithdrawState memory state = _decodeState(encodedState);
        bytes memory responderSignature = abi.decode(encodedResolver, (bytes));
        if (responderSignature.length == 0) return _refund(balance);
        bytes32 hash = withdrawHash(state);
        // Both signatures, so `Channel.withdraw` can always execute what resolves to [0, 0] here.
        _checkSigner(hash, state.initiatorSignature, state.initiator, false);
        _checkSigner(hash, responderSignature, state.responder, true);
        return [uint256(0), uint256(0)];
    }

    /// The commitment hash both parties sign, on this chain.
    function withdrawHash(WithdrawState memory state) public view returns (bytes32) {
        return
            ChannelHashes.withdrawHash(
                block.chainid,
                state.channelAddress,
                state.assetId,
                state.recipient,
                state.amount,
                state.nonce
            );
    }

    function _decodeState(bytes calldata encodedState) private pure returns (WithdrawState memory state) {
        (
            state.channelAddress,
            state.assetId,
            state.recipient,
            state.amount,
            state.nonce,
            state.initiator,
            state.responder,
            state.initiatorSignature
        ) = abi.decode(encodedState, (address, address, address, uint256, uint256, address, address, bytes));
    }

    function _checkSigner(bytes32 hash, bytes memory signature, address expected, bool responder) private pure {
        address signer = ECDSA.recover(MessageHashUtils.toEthSignedMessageHash(hash), signature);
        if (signer != expected) {
            if (responder) revert InvalidResponderSignature();
            revert InvalidInitiatorSignature();
        }
    }
}
