// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

/// A price feed with the shape of Chainlink's AggregatorV3Interface whose answer its owner sets, for
/// development chains and tests. Never deploy to a real network: its owner decides every price.
contract TestPriceFeed is Ownable {
    struct Round {
        int256 answer;
        uint256 startedAt;
        uint256 updatedAt;
    }

    uint8 public immutable decimals;
    string public description;
    uint256 public constant version = 0;
    uint80 public latestRound;
    mapping(uint80 => Round) private _rounds;

    error NoSuchRound(uint80 roundId);

    constructor(uint8 decimals_, int256 initialAnswer, string memory description_) Ownable(msg.sender) {
        decimals = decimals_;
        description = description_;
        _newRound(initialAnswer, block.timestamp);
    }

    /// A new round answered now, as a feed's regular update would be.
    function setAnswer(int256 answer) external onlyOwner {
        _newRound(answer, block.timestamp);
    }

    /// A new round claiming to be from `updatedAt`: an old one makes the feed stale, 0 an incomplete round.
    function setRound(int256 answer, uint256 updatedAt) external onlyOwner {
        _newRound(answer, updatedAt);
    }

    function getRoundData(uint80 roundId)
        public
        view
        returns (uint80, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound)
    {
        if (roundId == 0 || roundId > latestRound) revert NoSuchRound(roundId);
        Round storage round = _rounds[roundId];
        return (roundId, round.answer, round.startedAt, round.updatedAt, roundId);
    }

    function latestRoundData()
        external
        view
        returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound)
    {
        return getRoundData(latestRound);
    }

    function _newRound(int256 answer, uint256 updatedAt) private {
        latestRound += 1;
        _rounds[latestRound] = Round({answer: answer, startedAt: updatedAt, updatedAt: updatedAt});
    }
}
