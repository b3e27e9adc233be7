// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// The off-chain channel state both parties sign (docs/protocol.md, "Channel state").
struct ChannelState {
    address channelAddress;
    uint256 chainId;
    address node;
    address user;
    address[] assetIds;
    uint256[2][] balances; // per asset: [node, user]
    uint256[2][] processedDeposits; // per asset: [node, user]
    uint256[] defundNonces; // per asset
    uint256 timeout;
    uint256 nonce;
    bytes32 merkleRoot;
}

/// A conditional transfer locked in a channel (docs/protocol.md, "Transfers").
struct TransferState {
    address channelAddress;
    bytes32 transferId;
    bytes32 paymentId;
    address transferDefinition;
    address initiator;
    address responder;
    address assetId;
    uint256[2] balance; // [initiator, responder]
    uint256 transferTimeout;
    bytes32 initialStateHash;
    bytes32 metaHash;
}

/// A withdraw commitment: executes once on chain when both node and user signed its hash.
struct WithdrawCommitment {
    address channelAddress;
    address assetId;
    address recipient;
    uint256 amount;
    uint256 nonce;
}

/// The hashes every signature commits to. Each starts with a domain tag and binds the chain id.
library ChannelHashes {
    bytes32 internal constant CHANNEL_STATE_TAG = keccak256("connext-py/ChannelState/v1");
    bytes32 internal constant TRANSFER_STATE_TAG = keccak256("connext-py/TransferState/v1");
    bytes32 internal constant WITHDRAW_TAG = keccak256("connext-py/Withdraw/v1");
    bytes32 internal constant RESOLVER_TAG = keccak256("connext-py/Resolver/v1");

    function stateHash(ChannelState calldata state) internal pure returns (bytes32) {
        return keccak256(abi.encode(CHANNEL_STATE_TAG, state));
    }

    function transferHash(TransferState calldata transfer) internal pure returns (bytes32) {
        return keccak256(abi.encode(TRANSFER_STATE_TAG, transfer));
    }

    function withdrawHash(
        uint256 chainId,
        address channelAddress,
        address assetId,
        address recipient,
        uint256 amount,
        uint256 nonce
    ) internal pure returns (bytes32) {
        return keccak256(abi.encode(WITHDRAW_TAG, chainId, channelAddress, assetId, recipient, amount, nonce));
    }

    function resolverHash(
        uint256 chainId,
        bytes32 transferHash_,
        bytes calldata encodedResolver
    ) internal pure returns (bytes32) {
        return keccak256(abi.encode(RESOLVER_TAG, chainId, transferHash_, keccak256(encodedResolver)));
    }
}
