// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {DefinitionBase} from "./DefinitionBase.sol";

/// Unlocked by the preimage of a keccak256 hash. State `(bytes32 lockHash)`, resolver `(bytes32 preimage)`.
contract LinkedTransfer is DefinitionBase {
    /// keccak256 of the all-zero preimage, which means "cancel" and so can never unlock.
    bytes32 internal constant ZERO_PREIMAGE_HASH = keccak256(abi.encode(bytes32(0)));

    error InvalidLockHash();
    error InvalidPreimage();

    function create(uint256[2] calldata balance, bytes calldata encodedState) external pure returns (bool) {
        _checkInitialBalance(balance);
        bytes32 lockHash = abi.decode(encodedState, (bytes32));
        if (lockHash == bytes32(0) || lockHash == ZERO_PREIMAGE_HASH) revert InvalidLockHash();
        return true;
    }

    function resolve(
        uint256[2] calldata balance,
        bytes calldata encodedState,
        bytes calldata encodedResolver
    ) external pure returns (uint256[2] memory) {
        bytes32 lockHash = abi.decode(encodedState, (bytes32));
        bytes32 preimage = abi.decode(encodedResolver, (bytes32));
        if (preimage == bytes32(0)) return _refund(balance);
        if (keccak256(abi.encode(preimage)) != lockHash) revert InvalidPreimage();
        return _pay(balance);
    }
}
