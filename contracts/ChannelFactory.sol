// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Clones} from "@openzeppelin/contracts/proxy/Clones.sol";
import {Channel} from "./Channel.sol";

/// Creates channels: clones of one `Channel` mastercopy (EIP-1167 with the immutable args
/// `abi.encodePacked(node, user)`) at CREATE2 salt `keccak256(abi.encode(node, user, chainId))`.
/// A channel's address is known before it exists, so the user can fund it first.
/// Never change this contract, the mastercopy's bytecode or the salt rule on a deployed network:
/// old channel addresses must stay recomputable.
contract ChannelFactory {
    using SafeERC20 for IERC20;

    /// The `Channel` every clone delegates to; created here, so it trusts this factory's deposits.
    address public immutable mastercopy;

    event ChannelCreated(address indexed channel, address indexed node, address indexed user);

    error InvalidParties();
    error InvalidDefinitions();
    error ChannelExists(address channel);
    error WrongValue();

    constructor(address linked, address hashLock, address signed, address withdraw) {
        if (linked == address(0) || hashLock == address(0) || signed == address(0) || withdraw == address(0)) {
            revert InvalidDefinitions();
        }
        mastercopy = address(new Channel(linked, hashLock, signed, withdraw));
    }

    /// The address of the (node, user) channel on this chain, whether or not it exists yet.
    function getChannelAddress(address node, address user) public view returns (address) {
        return Clones.predictDeterministicAddressWithImmutableArgs(mastercopy, _args(node, user), _salt(node, user));
    }

    /// Deploys the (node, user) channel. Anyone may call; the address depends only on the two owners.
    function createChannel(address node, address user) external returns (address channel) {
        channel = _create(node, user, 0);
    }

    /// Deploys the caller's (node's) channel with `user` and records the node's first deposit in the
    /// same transaction: ETH goes in with the creation, tokens move from the node (which approved this
    /// factory) straight to the channel.
    function createChannelAndDepositNode(
        address user,
        address assetId,
        uint256 amount
    ) external payable returns (address channel) {
        if (assetId == address(0)) {
            if (msg.value != amount) revert WrongValue();
            channel = _create(msg.sender, user, amount);
        } else {
            if (msg.value != 0) revert WrongValue();
            channel = _create(msg.sender, user, 0);
            uint256 before = IERC20(assetId).balanceOf(channel);
            IERC20(assetId).safeTransferFrom(msg.sender, channel, amount);
            // Count what arrived: a fee-on-transfer token must not inflate the node's total.
            amount = IERC20(assetId).balanceOf(channel) - before;
        }
        Channel(payable(channel)).depositNode(assetId, amount);
    }

    function _create(address node, address user, uint256 value) private returns (address channel) {
        if (node == address(0) || user == address(0) || node == user) revert InvalidParties();
        bytes memory code = abi.encodePacked(
            hex"61",
            uint16(0x2d + 0x28),
            hex"3d81600a3d39f3363d3d373d3d3d363d73",
            mastercopy,
            hex"5af43d82803e903d91602b57fd5bf3",
            node,
            user
        );
        bytes32 salt = _salt(node, user);
        assembly ("memory-safe") {
            channel := create2(value, add(code, 0x20), mload(code), salt)
        }
        // The clone's init code cannot fail, so a zero address means the channel already exists.
        if (channel == address(0)) revert ChannelExists(getChannelAddress(node, user));
        emit ChannelCreated(channel, node, user);
    }

    function _args(address node, address user) private pure returns (bytes memory) {
        return abi.encodePacked(node, user);
    }

    function _salt(address node, address user) private view returns (bytes32) {
        return keccak256(abi.encode(node, user, block.chainid));
    }
}
