// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {ITransferDefinition} from "../interfaces/ITransferDefinition.sol";

/// What every definition shares: the initial balance rule and the two outcomes of a simple lock.
abstract contract DefinitionBase is ITransferDefinition {
    /// The initial balance must be [amount > 0, 0].
    error InvalidInitialBalance();

    function _checkInitialBalance(uint256[2] calldata balance) internal pure {
        if (balance[0] == 0 || balance[1] != 0) revert InvalidInitialBalance();
    }

    /// The responder's cancel (or a lapsed lock): everything back to the initiator.
    function _refund(uint256[2] calldata balance) internal pure returns (uint256[2] memory) {
        return [balance[0] + balance[1], uint256(0)];
    }

    /// The condition was met: everything to the responder.
    function _pay(uint256[2] calldata balance) internal pure returns (uint256[2] memory) {
        return [uint256(0), balance[0] + balance[1]];
    }
}
