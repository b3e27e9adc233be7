// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// Tests only: a recipient that, on receiving ETH, either refuses it or calls `target` again with
/// `attackCalldata` (re-entry) and records whether that succeeded.
contract ReentrantReceiver {
    address public target;
    bytes public attackCalldata;
    bool public refuse;
    bool public attacked;
    bool public lastAttackSucceeded;

    error Refused();

    function arm(address target_, bytes calldata attackCalldata_) external {
        target = target_;
        attackCalldata = attackCalldata_;
        attacked = false;
    }

    function setRefuse(bool value) external {
        refuse = value;
    }

    receive() external payable {
        if (refuse) revert Refused();
        if (target != address(0) && !attacked) {
            attacked = true;
            (bool ok, ) = target.call(attackCalldata);
            lastAttackSucceeded = ok;
        }
    }
}
