// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {MessageHashUtils} from "@openzeppelin/contracts/utils/cryptography/MessageHashUtils.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {ITransferDefinition} from "./interfaces/ITransferDefinition.sol";
import {ChannelHashes, ChannelState, TransferState, WithdrawCommitment} from "./lib/ChannelTypes.sol";

/// A payment channel between a node and a user: the mastercopy behind every channel clone.
///
/// Each channel is a clone (EIP-1167 with immutable args) created by `ChannelFactory`; the clone's code
/// carries `abi.encodePacked(node, user)`, so the owners are never in storage and cannot change.
/// Invariants:
/// - per asset, everything that ever left the channel is in `totalWithdrawn` (payouts that failed are owed
///   in `claimable` and count when claimed), so the user's total deposits are derived as
///   `balance + totalWithdrawn - totalDepositsNode` and never change when money leaves;
/// - a withdraw nonce executes once; an asset defunds once per defund nonce; a transfer pays out once ever;
/// - every function that moves money is `nonReentrant` and changes storage before it calls out.
contract Channel is ReentrancyGuardTransient {
    using SafeERC20 for IERC20;
    using SafeCast for uint256;

    struct Dispute {
        bytes32 stateHash;
        bytes32 merkleRoot;
        uint128 nonce;
        uint64 consensusExpiry; // a newer state may replace the disputed one before this time
        uint64 defundExpiry; // defunds and transfer disputes happen in [consensusExpiry, defundExpiry)
    }

    struct TransferDispute {
        uint64 expiry; // the responder may resolve before this time; refund after. Zero: never disputed.
        bool defunded;
    }

    /// The factory that creates the clones; its node deposits arrive with the call that records them.
    address public immutable factory;
    /// The transfer definitions this channel accepts (fixed at deployment: no registry to capture).
    address public immutable linkedTransfer;
    address public immutable hashLockTransfer;
    address public immutable signedTransfer;
    address public immutable withdrawTransfer;
    address private immutable _mastercopy;

    /// Per asset, in one slot because `defundChannel` needs both: the node's running deposit total and
    /// the defund nonce of the last defund. Limits: a node total below 2^192, defund nonces below 2^64.
    struct AssetRecord {
        uint192 totalDepositsNode;
        uint64 defundNonce;
    }

    mapping(address assetId => AssetRecord) private _assets;
    mapping(address assetId => uint256) private _totalWithdrawn;
    mapping(address assetId => mapping(address owner => uint256)) private _claimable;
    /// Executed withdraw nonces, 256 to a slot.
    mapping(uint256 word => uint256) private _withdrawnNonces;
    mapping(bytes32 transferHash => TransferDispute) private _transferDisputes;
    Dispute private _dispute;

    event NodeDeposited(address indexed assetId, uint256 amount, uint256 totalDepositsNode);
    event Withdrawn(address indexed assetId, address indexed recipient, uint256 amount, uint256 nonce);
    event ChannelDisputed(
        address indexed disputer,
        uint256 nonce,
        bytes32 stateHash,
        bytes32 merkleRoot,
        uint256 consensusExpiry,
        uint256 defundExpiry
    );
    event ChannelDefunded(address indexed assetId, uint256 defundNonce, uint256 toNode, uint256 toUser);
    event TransferDisputed(bytes32 indexed transferId, bytes32 transferHash, uint256 expiry);
    event TransferDefunded(bytes32 indexed transferId, bytes32 transferHash, uint256 toInitiator, uint256 toResponder);
    /// A payout the recipient (or its token) refused; it waits in `claimable` for `claim`.
    event PayoutDeferred(address indexed assetId, address indexed owner, uint256 amount);
    event Claimed(address indexed assetId, address indexed owner, address recipient, uint256 amount);

    error NotAClone();
    error WrongValue();
    error WrongChannel();
    error WrongChainId();
    error WrongParties();
    error MalformedState();
    error InvalidTimeout();
    error InvalidRecipient();
    error InvalidSignature(address expectedSigner);
    error WithdrawAlreadyExecuted(uint256 nonce);
    error StaleNonce(uint256 disputedNonce);
    error DisputeInProgress(uint256 defundExpiry);
    error NoDispute();
    error NotInDefundPhase();
    error WrongState();
    error AlreadyDefunded(address assetId, uint256 defundNonce);
    error UnknownTransferDefinition(address definition);
    error InvalidMerkleProof();
    error TransferAlreadyDisputed();
    error TransferNotDisputed();
    error TransferAlreadyDefunded();
    error WrongInitialState();
    error ResolveOverpays();
    error InvalidWithdrawTransfer();
    error NothingToClaim();
    error EthTransferFailed();

    modifier onlyClone() {
        if (address(this) == _mastercopy) revert NotAClone();
        _;
    }

    constructor(address linked, address hashLock, address signed, address withdraw_) {
        factory = msg.sender;
        linkedTransfer = linked;
        hashLockTransfer = hashLock;
        signedTransfer = signed;
        withdrawTransfer = withdraw_;
        _mastercopy = address(this);
    }

    // ---------------------------------------------------------------- deposits

    /// A user deposits by sending ETH (or tokens) to the channel address, before or after deployment.
    receive() external payable onlyClone {}

    /// Records a node deposit. The factory calls this after moving the funds itself in the same
    /// transaction; anyone else pays here (ETH as `msg.value`, tokens pulled from the caller), and
    /// whatever they pay counts as the node's.
    function depositNode(address assetId, uint256 amount) external payable onlyClone nonReentrant {
        uint256 received = amount;
        if (msg.sender == factory) {
            if (msg.value != 0) revert WrongValue();
        } else if (assetId == address(0)) {
            if (msg.value != amount) revert WrongValue();
        } else {
            if (msg.value != 0) revert WrongValue();
            // Count what arrived, not what was asked: fee-on-transfer tokens must not inflate the total.
            uint256 before = IERC20(assetId).balanceOf(address(this));
            IERC20(assetId).safeTransferFrom(msg.sender, address(this), amount);
            received = IERC20(assetId).balanceOf(address(this)) - before;
        }
        AssetRecord storage record = _assets[assetId];
        uint256 total = uint256(record.totalDepositsNode) + received;
        record.totalDepositsNode = total.toUint192();
        emit NodeDeposited(assetId, received, total);
    }

    // ---------------------------------------------------------------- withdraw

    /// Executes a withdraw commitment both parties signed, once per nonce.
    function withdraw(
        WithdrawCommitment calldata commitment,
        bytes calldata nodeSignature,
        bytes calldata userSignature
    ) external onlyClone nonReentrant {
        if (commitment.channelAddress != address(this)) revert WrongChannel();
        if (commitment.recipient == address(this) || commitment.recipient == address(0)) revert InvalidRecipient();
        bytes32 hash = ChannelHashes.withdrawHash(
            block.chainid,
            address(this),
            commitment.assetId,
            commitment.recipient,
            commitment.amount,
            commitment.nonce
        );
        (address node_, address user_) = _parties();
        _checkSignature(hash, nodeSignature, node_);
        _checkSignature(hash, userSignature, user_);
        if (!_markWithdrawExecuted(commitment.nonce)) revert WithdrawAlreadyExecuted(commitment.nonce);
        _totalWithdrawn[commitment.assetId] += commitment.amount;
        emit Withdrawn(commitment.assetId, commitment.recipient, commitment.amount, commitment.nonce);
        _send(commitment.assetId, commitment.recipient, commitment.amount);
    }

    // ---------------------------------------------------------------- channel dispute

    /// Starts a dispute with a doubly signed state, or replaces the disputed state with a newer one
    /// while the consensus phase lasts.
    function disputeChannel(
        ChannelState calldata state,
        bytes calldata nodeSignature,
        bytes calldata userSignature
    ) external onlyClone nonReentrant {
        (address node_, address user_) = _parties();
        if (state.channelAddress != address(this)) revert WrongChannel();
        if (state.chainId != block.chainid) revert WrongChainId();
        if (state.node != node_ || state.user != user_) revert WrongParties();
        uint256 assetCount = state.assetIds.length;
        if (
            state.balances.length != assetCount ||
            state.processedDeposits.length != assetCount ||
            state.defundNonces.length != assetCount
        ) revert MalformedState();
        bytes32 hash = ChannelHashes.stateHash(state);
        _checkSignature(hash, nodeSignature, node_);
        _checkSignature(hash, userSignature, user_);

        Dispute memory dispute = _dispute;
        if (block.timestamp < dispute.consensusExpiry) {
            if (state.nonce <= dispute.nonce) revert StaleNonce(dispute.nonce);
        } else {
            if (block.timestamp < dispute.defundExpiry) revert DisputeInProgress(dispute.defundExpiry);
            // A finished dispute may be restarted with the same state (to defund what nobody defunded),
            // never with an older one.
            if (state.nonce < dispute.nonce) revert StaleNonce(dispute.nonce);
            if (state.timeout == 0) revert InvalidTimeout();
            dispute.consensusExpiry = (block.timestamp + state.timeout).toUint64();
            dispute.defundExpiry = (block.timestamp + 2 * state.timeout).toUint64();
        }
        dispute.stateHash = hash;
        dispute.merkleRoot = state.merkleRoot;
        dispute.nonce = state.nonce.toUint128();
        _dispute = dispute;
        emit ChannelDisputed(
            msg.sender,
            state.nonce,
            hash,
            state.merkleRoot,
            dispute.consensusExpiry,
            dispute.defundExpiry
        );
    }

    /// Pays out the disputed state for the given assets: to each side its balance plus its deposits the
    /// state has not credited yet. An asset the state does not list has balances and processed deposits
    /// of zero and defund nonce 1, so deposits nobody credited are never stuck.
    function defundChannel(ChannelState calldata state, address[] calldata assetIds) external onlyClone nonReentrant {
        _requireDefundPhase();
        if (ChannelHashes.stateHash(state) != _dispute.stateHash) revert WrongState();

        uint256 count = assetIds.length;
        uint256[2][] memory payouts = new uint256[2][](count);
        for (uint256 i = 0; i < count; ++i) {
            address assetId = assetIds[i];
            (uint256[2] memory balance, uint256[2] memory processed, uint256 defundNonce) = _assetInState(
                state,
                assetId
            );
            AssetRecord memory record = _assets[assetId];
            if (record.defundNonce >= defundNonce) revert AlreadyDefunded(assetId, defundNonce);
            _assets[assetId].defundNonce = defundNonce.toUint64();

            uint256 totalNode = record.totalDepositsNode;
            uint256 withdrawn = _totalWithdrawn[assetId];
            uint256 totalUser = _saturatingSub(_balanceOf(assetId) + withdrawn, totalNode);
            uint256 toNode = balance[0] + _saturatingSub(totalNode, processed[0]);
            uint256 toUser = balance[1] + _saturatingSub(totalUser, processed[1]);
            _totalWithdrawn[assetId] = withdrawn + toNode + toUser;
            payouts[i] = [toNode, toUser];
            emit ChannelDefunded(assetId, defundNonce, toNode, toUser);
        }
        (address node_, address user_) = _parties();
        for (uint256 i = 0; i < count; ++i) {
            _sendOrDefer(assetIds[i], node_, payouts[i][0]);
            _sendOrDefer(assetIds[i], user_, payouts[i][1]);
        }
    }

    // ---------------------------------------------------------------- transfer dispute

    /// Proves an active transfer against the disputed state's merkle root and starts its window.
    function disputeTransfer(TransferState calldata transfer, bytes32[] calldata merkleProof) external onlyClone nonReentrant {
        _requireDefundPhase();
        if (transfer.channelAddress != address(this)) revert WrongChannel();
        if (!isKnownDefinition(transfer.transferDefinition)) {
            revert UnknownTransferDefinition(transfer.transferDefinition);
        }
        (address node_, address user_) = _parties();
        if (
            !((transfer.initiator == node_ && transfer.responder == user_) ||
                (transfer.initiator == user_ && transfer.responder == node_))
        ) revert WrongParties();
        bytes32 hash = ChannelHashes.transferHash(transfer);
        if (!MerkleProof.verifyCalldata(merkleProof, _dispute.merkleRoot, hash)) revert InvalidMerkleProof();
        TransferDispute storage record = _transferDisputes[hash];
        if (record.expiry != 0) revert TransferAlreadyDisputed();
        uint64 expiry = (block.timestamp + transfer.transferTimeout).toUint64();
        record.expiry = expiry;
        emit TransferDisputed(transfer.transferId, hash, expiry);
    }

    /// Pays out a disputed transfer, once: by its definition while its window is open (the responder
    /// calls, or anyone with the responder's signature over the resolver), the locked balance back as it
    /// stands after the window.
    function defundTransfer(
        TransferState calldata transfer,
        bytes calldata encodedInitialState,
        bytes calldata encodedResolver,
        bytes calldata responderSignature
    ) external onlyClone nonReentrant {
        bytes32 hash = ChannelHashes.transferHash(transfer);
        TransferDispute storage record = _transferDisputes[hash];
        TransferDispute memory current = record;
        if (current.expiry == 0) revert TransferNotDisputed();
        if (current.defunded) revert TransferAlreadyDefunded();
        if (keccak256(encodedInitialState) != transfer.initialStateHash) revert WrongInitialState();

        uint256[2] memory payout = transfer.transferDefinition == withdrawTransfer
            ? _withdrawTransferPayout(transfer, hash, current.expiry, encodedInitialState, encodedResolver, responderSignature)
            : _transferPayout(transfer, hash, current.expiry, encodedInitialState, encodedResolver, responderSignature);

        record.defunded = true;
        _totalWithdrawn[transfer.assetId] += payout[0] + payout[1];
        emit TransferDefunded(transfer.transferId, hash, payout[0], payout[1]);
        _sendOrDefer(transfer.assetId, transfer.initiator, payout[0]);
        _sendOrDefer(transfer.assetId, transfer.responder, payout[1]);
    }

    // ---------------------------------------------------------------- claims

    /// Pays the caller what a refused payout left owed to it, to `recipient`.
    function claim(address assetId, address recipient) external onlyClone nonReentrant {
        if (recipient == address(this) || recipient == address(0)) revert InvalidRecipient();
        uint256 amount = _claimable[assetId][msg.sender];
        if (amount == 0) revert NothingToClaim();
        _claimable[assetId][msg.sender] = 0;
        _totalWithdrawn[assetId] += amount;
        emit Claimed(assetId, msg.sender, recipient, amount);
        _send(assetId, recipient, amount);
    }

    // ---------------------------------------------------------------- reads

    function node() external view onlyClone returns (address node_) {
        (node_, ) = _parties();
    }

    function user() external view onlyClone returns (address user_) {
        (, user_) = _parties();
    }

    function getTotalDepositsNode(address assetId) external view returns (uint256) {
        return _assets[assetId].totalDepositsNode;
    }

    /// The user's running total: what the channel holds or paid out, minus what the node put in.
    function getTotalDepositsUser(address assetId) external view returns (uint256) {
        return _saturatingSub(_balanceOf(assetId) + _totalWithdrawn[assetId], _assets[assetId].totalDepositsNode);
    }

    function getTotalWithdrawn(address assetId) external view returns (uint256) {
        return _totalWithdrawn[assetId];
    }

    function getDefundNonce(address assetId) external view returns (uint256) {
        return _assets[assetId].defundNonce;
    }

    function getClaimable(address assetId, address owner) external view returns (uint256) {
        return _claimable[assetId][owner];
    }

    function isWithdrawExecuted(uint256 nonce) public view returns (bool) {
        return _withdrawnNonces[nonce >> 8] & (1 << (nonce & 0xff)) != 0;
    }

    function getDispute() external view returns (Dispute memory) {
        return _dispute;
    }

    function getTransferDispute(bytes32 transferHash) external view returns (TransferDispute memory) {
        return _transferDisputes[transferHash];
    }

    function isKnownDefinition(address definition) public view returns (bool) {
        return
            definition != address(0) &&
            (definition == linkedTransfer ||
                definition == hashLockTransfer ||
                definition == signedTransfer ||
                definition == withdrawTransfer);
    }

    // ---------------------------------------------------------------- internals

    /// The owners from the clone's immutable args: the 40 bytes after the 45-byte EIP-1167 code.
    function _parties() private view returns (address node_, address user_) {
        assembly ("memory-safe") {
            extcodecopy(address(), 0x00, 0x2d, 0x28)
            node_ := shr(96, mload(0x00))
            user_ := shr(96, mload(0x14))
        }
    }

    function _checkSignature(bytes32 hash, bytes calldata signature, address expected) private pure {
        address signer = ECDSA.recoverCalldata(MessageHashUtils.toEthSignedMessageHash(hash), signature);
        if (signer != expected) revert InvalidSignature(expected);
    }

    /// Sets the nonce's bit; false when it was already set.
    function _markWithdrawExecuted(uint256 nonce) private returns (bool) {
        uint256 word = nonce >> 8;
        uint256 bit = 1 << (nonce & 0xff);
        uint256 bits = _withdrawnNonces[word];
        if (bits & bit != 0) return false;
        _withdrawnNonces[word] = bits | bit;
        return true;
    }

    function _requireDefundPhase() private view {
        uint256 consensusExpiry = _dispute.consensusExpiry;
        if (consensusExpiry == 0) revert NoDispute();
        if (block.timestamp < consensusExpiry || block.timestamp >= _dispute.defundExpiry) revert NotInDefundPhase();
    }

    /// The asset's entry in the state (its first one), or the entry of an asset the state never credited.
    function _assetInState(
        ChannelState calldata state,
        address assetId
    ) private pure returns (uint256[2] memory balance, uint256[2] memory processed, uint256 defundNonce) {
        uint256 count = state.assetIds.length;
        for (uint256 i = 0; i < count; ++i) {
            if (state.assetIds[i] == assetId) return (state.balances[i], state.processedDeposits[i], state.defundNonces[i]);
        }
        return (balance, processed, 1);
    }

    /// By the definition while the window is open (the responder's call or signature), else refunded.
    function _transferPayout(
        TransferState calldata transfer,
        bytes32 hash,
        uint64 expiry,
        bytes calldata encodedInitialState,
        bytes calldata encodedResolver,
        bytes calldata responderSignature
    ) private view returns (uint256[2] memory payout) {
        if (block.timestamp >= expiry) return transfer.balance;
        if (msg.sender != transfer.responder) {
            bytes32 resolverHash = ChannelHashes.resolverHash(block.chainid, hash, encodedResolver);
            _checkSignature(resolverHash, responderSignature, transfer.responder);
        }
        payout = ITransferDefinition(transfer.transferDefinition).resolve(
            transfer.balance,
            encodedInitialState,
            encodedResolver
        );
        if (payout[0] + payout[1] > transfer.balance[0] + transfer.balance[1]) revert ResolveOverpays();
    }

    /// A withdraw transfer leaves either through `withdraw` or as a refund, never both: once its nonce
    /// executed it pays nothing more; a refund burns the nonce; and [0, 0] (left to `withdraw`) is accepted
    /// only for a commitment `withdraw` can execute for this transfer's parties, asset and amount.
    function _withdrawTransferPayout(
        TransferState calldata transfer,
        bytes32 hash,
        uint64 expiry,
        bytes calldata encodedInitialState,
        bytes calldata encodedResolver,
        bytes calldata responderSignature
    ) private returns (uint256[2] memory payout) {
        (
            bool ours,
            address assetId,
            uint256 amount,
            uint256 nonce,
            address initiator,
            address responder
        ) = _withdrawFields(encodedInitialState);
        if (ours && isWithdrawExecuted(nonce)) return payout;
        payout = _transferPayout(transfer, hash, expiry, encodedInitialState, encodedResolver, responderSignature);
        if (payout[0] == 0 && payout[1] == 0) {
            bool executable = ours &&
                assetId == transfer.assetId &&
                amount == transfer.balance[0] &&
                initiator == transfer.initiator &&
                responder == transfer.responder;
            if (!executable && transfer.balance[0] + transfer.balance[1] != 0) revert InvalidWithdrawTransfer();
        } else if (ours) {
            _markWithdrawExecuted(nonce);
        }
    }

    /// The commitment fields of a Withdraw initial state, read word by word without `abi.decode`, so a
    /// malformed state can still be refunded. `ours` is false unless the state is well formed enough to
    /// name this channel (and clean addresses).
    function _withdrawFields(
        bytes calldata encoded
    )
        private
        view
        returns (bool ours, address assetId, uint256 amount, uint256 nonce, address initiator, address responder)
    {
        if (encoded.length < 7 * 32) return (false, address(0), 0, 0, address(0), address(0));
        uint256 channelWord = _word(encoded, 0);
        uint256 assetWord = _word(encoded, 1);
        uint256 initiatorWord = _word(encoded, 5);
        uint256 responderWord = _word(encoded, 6);
        ours =
            channelWord == uint256(uint160(address(this))) &&
            (assetWord | initiatorWord | responderWord) >> 160 == 0;
        assetId = address(uint160(assetWord));
        amount = _word(encoded, 3);
        nonce = _word(encoded, 4);
        initiator = address(uint160(initiatorWord));
        responder = address(uint160(responderWord));
    }

    function _word(bytes calldata encoded, uint256 index) private pure returns (uint256) {
        return uint256(bytes32(encoded[index * 32:(index + 1) * 32]));
    }

    function _balanceOf(address assetId) private view returns (uint256) {
        if (assetId == address(0)) return address(this).balance;
        return IERC20(assetId).balanceOf(address(this));
    }

    function _saturatingSub(uint256 a, uint256 b) private pure returns (uint256) {
        return a > b ? a - b : 0;
    }

    /// Pays or reverts: for the one-recipient paths (withdraw, claim), where a refusal should undo the call.
    function _send(address assetId, address recipient, uint256 amount) private {
        if (amount == 0) return;
        if (assetId == address(0)) {
            if (!_sendEth(recipient, amount)) revert EthTransferFailed();
        } else {
            IERC20(assetId).safeTransfer(recipient, amount);
        }
    }

    /// Pays, or leaves the amount claimable when the recipient or the token refuses, so one side's
    /// payout can never block the other's.
    function _sendOrDefer(address assetId, address owner, uint256 amount) private {
        if (amount == 0) return;
        bool paid = assetId == address(0)
            ? _sendEth(owner, amount)
            : IERC20(assetId).trySafeTransfer(owner, amount);
        if (!paid) {
            _totalWithdrawn[assetId] -= amount;
            _claimable[assetId][owner] += amount;
            emit PayoutDeferred(assetId, owner, amount);
        }
    }

    /// A plain ETH call that never copies return data (no return-data bomb).
    function _sendEth(address recipient, uint256 amount) private returns (bool success) {
        assembly ("memory-safe") {
            success := call(gas(), recipient, amount, 0, 0, 0, 0)
        }
    }
}
