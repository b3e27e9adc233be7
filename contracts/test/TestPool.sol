// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";

/// A constant-product pool of two ERC20s read like a Uniswap V2 pair (`token0`, `token1`, `getReserves`),
/// for development chains and tests: anyone adds liquidity (no LP token, nobody can take it out) and
/// trades with `swapExactIn` at V2's 0.3% fee. Never deploy to a real network: liquidity is locked in it.
contract TestPool is ReentrancyGuard {
    using SafeERC20 for IERC20;

    address public immutable token0;
    address public immutable token1;
    uint112 private _reserve0;
    uint112 private _reserve1;
    uint32 private _blockTimestampLast;

    event Sync(uint112 reserve0, uint112 reserve1);
    event Swap(address indexed sender, address indexed tokenIn, uint256 amountIn, uint256 amountOut, address indexed to);

    error IdenticalTokens();
    error ZeroAddress();
    error NotAPoolToken(address token);
    error NoLiquidity();
    error ZeroAmount();
    error InsufficientOutput(uint256 amountOut, uint256 minOut);
    error ReservesOverflow();

    constructor(address tokenA, address tokenB) {
        if (tokenA == tokenB) revert IdenticalTokens();
        (address sorted0, address sorted1) = tokenA < tokenB ? (tokenA, tokenB) : (tokenB, tokenA);
        if (sorted0 == address(0)) revert ZeroAddress();
        token0 = sorted0;
        token1 = sorted1;
    }

    function getReserves() external view returns (uint112 reserve0, uint112 reserve1, uint32 blockTimestampLast) {
        return (_reserve0, _reserve1, _blockTimestampLast);
    }

    /// Pulls `amount0` of token0 and `amount1` of token1 from the caller (approved beforehand).
    function addLiquidity(uint256 amount0, uint256 amount1) external nonReentrant {
        if (amount0 == 0 && amount1 == 0) revert ZeroAmount();
        IERC20(token0).safeTransferFrom(msg.sender, address(this), amount0);
        IERC20(token1).safeTransferFrom(msg.sender, address(this), amount1);
        _sync();
    }

    /// Sells `amountIn` of `tokenIn` for the other token, sent to `to`. The input counted is what the
    /// pool received, so a token that takes a fee on transfer cannot break x*y=k.
    function swapExactIn(address tokenIn, uint256 amountIn, uint256 minOut, address to)
        external
        nonReentrant
        returns (uint256 amountOut)
    {
        if (tokenIn != token0 && tokenIn != token1) revert NotAPoolToken(tokenIn);
        if (amountIn == 0) revert ZeroAmount();
        (address tokenOut, uint256 reserveIn, uint256 reserveOut) =
            tokenIn == token0 ? (token1, uint256(_reserve0), uint256(_reserve1)) : (token0, uint256(_reserve1), uint256(_reserve0));
        if (reserveIn == 0 || reserveOut == 0) revert NoLiquidity();
        IERC20(tokenIn).safeTransferFrom(msg.sender, address(this), amountIn);
        uint256 received = IERC20(tokenIn).balanceOf(address(this)) - reserveIn;
        amountOut = getAmountOut(received, reserveIn, reserveOut);
        if (amountOut == 0 || amountOut < minOut) revert InsufficientOutput(amountOut, minOut);
        IERC20(tokenOut).safeTransfer(to, amountOut);
        _sync();
        emit Swap(msg.sender, tokenIn, received, amountOut, to);
    }

    /// Uniswap V2's getAmountOut: (x + 0.997 dx)(y - dy) >= x y, rounded down.
    function getAmountOut(uint256 amountIn, uint256 reserveIn, uint256 reserveOut) public pure returns (uint256) {
        uint256 amountInWithFee = amountIn * 997;
        return (amountInWithFee * reserveOut) / (reserveIn * 1000 + amountInWithFee);
    }

    function _sync() private {
        uint256 balance0 = IERC20(token0).balanceOf(address(this));
        uint256 balance1 = IERC20(token1).balanceOf(address(this));
        if (balance0 > type(uint112).max || balance1 > type(uint112).max) revert ReservesOverflow();
        _reserve0 = uint112(balance0);
        _reserve1 = uint112(balance1);
        _blockTimestampLast = uint32(block.timestamp); // V2 keeps it modulo 2**32 too
        emit Sync(_reserve0, _reserve1);
    }
}
