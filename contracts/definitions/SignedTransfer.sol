// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {DefinitionBase} from "./DefinitionBase.sol";

/// Unlocked by a named signer's EIP-712 `Receipt(bytes32 paymentId,bytes32 data)` signature.
/// State `(address signer, bytes32 paymentId)`, resolver `(bytes32 data, bytes signature)`;
/// an empty signature is the responder's cancel.
contract SignedTransfer is DefinitionBase, EIP712 {
    bytes32 public constant RECEIPT_TYPEHASH = keccak256("Receipt(bytes32 paymentId,bytes32 data)");

    error InvalidSigner();
    error InvalidReceiptSignature();

    constructor() EIP712("Connext Signed Transfer", "1") {}

    function create(uint256[2] calldata balance, bytes calldata encodedState) external pure returns (bool) {
        _checkInitialBalance(balance);
        (address signer, ) = abi.decode(encodedState, (address, bytes32));
        if (signer == address(0)) revert InvalidSigner();
        return true;
    }

    function resolve(
        uint256[2] calldata balance,
        bytes calldata encodedState,
        bytes calldata encodedResolver
    ) external view returns (uint256[2] memory) {
        (address signer, bytes32 paymentId) = abi.decode(encodedState, (address, bytes32));
        (bytes32 data, bytes memory signature) = abi.decode(encodedResolver, (bytes32, bytes));
        if (signature.length == 0) return _refund(balance);
        bytes32 digest = receiptDigest(paymentId, data);
        if (ECDSA.recover(digest, signature) != signer) revert InvalidReceiptSignature();
        return _pay(balance);
    }

    /// The EIP-712 digest the signer signs for (paymentId, data) on this chain.
    function receiptDigest(bytes32 paymentId, bytes32 data) public view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(RECEIPT_TYPEHASH, paymentId, data)));
    }
}
