// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {DefinitionBase} from "./DefinitionBase.sol";

/// Unlocked by a keccak256 preimage revealed before an expiry (unix seconds); refunded after.
/// State `(bytes32 lockHash, uint256 expiry)`, resolver `(bytes32 preimage)`.
contract HashLockTransfer is DefinitionBase {
    bytes32 internal constant ZERO_PREIMAGE_HASH = keccak256(abi.encode(bytes32(0)));

    error InvalidLockHash();
    error InvalidExpiry();
    error InvalidPreimage();
    error Expired(uint256 expiry);

    function create(uint256[2] calldata balance, bytes calldata encodedState) external pure returns (bool) {
        _checkInitialBalance(balance);
        (bytes32 lockHash, uint256 expiry) = abi.decode(encodedState, (bytes32, uint256));
        if (lockHash == bytes32(0) || lockHash == ZERO_PREIMAGE_HASH) revert InvalidLockHash();
        if (expiry == 0) revert InvalidExpiry();
        return true;
    }

    function resolve(
        uint256[2] calldata balance,
        bytes calldata encodedState,
        bytes calldata encodedResolver
    ) external view returns (uint256[2] memory) {
        (bytes32 lockHash, uint256 expiry) = abi.decode(encodedState, (bytes32, uint256));
        bytes32 preimage = abi.decode(encodedResolver, (bytes32));
        if (preimage == bytes32(0)) return _refund(balance);
        if (block.timestamp >= expiry) revert Expired(expiry);
        if (keccak256(abi.encode(preimage)) != lockHash) revert InvalidPreimage();
        return _pay(balance);
    }
}
