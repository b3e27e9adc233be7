// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// A transfer definition: the pure rules that lock and unlock one kind of conditional transfer.
/// `balance` is [initiator, responder]; the encodings of state and resolver are per definition.
interface ITransferDefinition {
    /// Checks an initial state; reverts with a custom error when it is invalid, returns true otherwise.
    function create(uint256[2] calldata balance, bytes calldata encodedState) external view returns (bool);

    /// The final balances for a resolver. Never more in total than `balance` holds; an empty resolver
    /// value is the responder's cancel and refunds the initiator. Reverts on an invalid resolver.
    function resolve(
        uint256[2] calldata balance,
        bytes calldata encodedState,
        bytes calldata encodedResolver
    ) external view returns (uint256[2] memory);
}
