// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {ChannelHashes, ChannelState, TransferState} from "../lib/ChannelTypes.sol";

/// Tests only: the channel's hashing exposed, so tests/vectors can pin the Solidity side.
contract HashHarness {
    function stateHash(ChannelState calldata state) external pure returns (bytes32) {
        return ChannelHashes.stateHash(state);
    }

    function transferHash(TransferState calldata transfer) external pure returns (bytes32) {
        return ChannelHashes.transferHash(transfer);
    }

    function withdrawHash(
        uint256 chainId,
        address channelAddress,
        address assetId,
        address recipient,
        uint256 amount,
        uint256 nonce
    ) external pure returns (bytes32) {
        return ChannelHashes.withdrawHash(chainId, channelAddress, assetId, recipient, amount, nonce);
    }

    function resolverHash(
        uint256 chainId,
        bytes32 transferHash_,
        bytes calldata encodedResolver
    ) external pure returns (bytes32) {
        return ChannelHashes.resolverHash(chainId, transferHash_, encodedResolver);
    }

    function verifyProof(bytes32[] calldata proof, bytes32 root, bytes32 leaf) external pure returns (bool) {
        return MerkleProof.verifyCalldata(proof, root, leaf);
    }
}
