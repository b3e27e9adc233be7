// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// Tests only: an ERC20 that attacks whoever moves it. On every transfer from or to `victim` it calls
/// `victim` again with `attackCalldata` (re-entry), and it can refuse transfers to one address
/// (a blacklist) or answer `false` instead of reverting.
contract MaliciousToken is ERC20 {
    address public victim;
    bytes public attackCalldata;
    uint256 public attacksLeft;
    bool public lastAttackSucceeded;
    bytes public lastAttackReturn;
    address public blocked;
    bool public returnFalse;

    error Blocked(address recipient);

    constructor() ERC20("Malicious", "EVIL") {}

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    function arm(address victim_, bytes calldata attackCalldata_, uint256 times) external {
        victim = victim_;
        attackCalldata = attackCalldata_;
        attacksLeft = times;
    }

    function setBlocked(address recipient) external {
        blocked = recipient;
    }

    function setReturnFalse(bool value) external {
        returnFalse = value;
    }

    function transfer(address to, uint256 value) public override returns (bool) {
        if (returnFalse) return false;
        return super.transfer(to, value);
    }

    function _update(address from, address to, uint256 value) internal override {
        if (to != address(0) && to == blocked) revert Blocked(to);
        super._update(from, to, value);
        if (victim != address(0) && (from == victim || to == victim) && attacksLeft > 0) {
            attacksLeft -= 1;
            (bool ok, bytes memory ret) = victim.call(attackCalldata);
            lastAttackSucceeded = ok;
            lastAttackReturn = ret;
        }
    }
}
