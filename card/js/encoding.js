// Canonical encoding and hashing, byte for byte as docs/protocol.md, the contracts and
// connext/protocol/encoding.py define them: keccak256 over `abi.encode` of a domain tag and the object.
// Derived values (transfer ids and hashes, merkle roots, state hashes) are cached per frozen object.

import { abiCodec } from './abi.js';
import { concatHex, keccak256, utf8 } from './bytes.js';
import { merkleRoot } from './merkle.js';

export const CHANNEL_STATE_TAG = keccak256(utf8('connext-py/ChannelState/v1'));
export const TRANSFER_STATE_TAG = keccak256(utf8('connext-py/TransferState/v1'));
export const WITHDRAW_TAG = keccak256(utf8('connext-py/Withdraw/v1'));
export const RESOLVER_TAG = keccak256(utf8('connext-py/Resolver/v1'));
export const TRANSFER_ID_TAG = keccak256(utf8('connext-py/TransferId/v1'));

// The ABI type lists hashed for each object (first element is always the domain tag); a tuple is a list.
export const CHANNEL_STATE_TYPE = Object.freeze([
  'address', 'uint256', 'address', 'address', 'address[]', 'uint256[2][]', 'uint256[2][]', 'uint256[]',
  'uint256', 'uint256', 'bytes32',
]);
export const TRANSFER_STATE_TYPE = Object.freeze([
  'address', 'bytes32', 'bytes32', 'address', 'address', 'address', 'address', 'uint256[2]', 'uint256',
  'bytes32', 'bytes32',
]);
export const STATE_HASH_TYPES = Object.freeze(['bytes32', CHANNEL_STATE_TYPE]);
export const TRANSFER_HASH_TYPES = Object.freeze(['bytes32', TRANSFER_STATE_TYPE]);
export const TRANSFER_ID_TYPES = Object.freeze(['bytes32', 'address', 'bytes32', 'uint256']);
export const WITHDRAW_HASH_TYPES = Object.freeze(['bytes32', 'uint256', 'address', 'address', 'address', 'uint256', 'uint256']);
export const RESOLVER_HASH_TYPES = Object.freeze(['bytes32', 'uint256', 'bytes32', 'bytes32']);

const stateCodec = abiCodec(STATE_HASH_TYPES);
const transferCodec = abiCodec(TRANSFER_HASH_TYPES);
const transferIdCodec = abiCodec(TRANSFER_ID_TYPES);
const withdrawCodec = abiCodec(WITHDRAW_HASH_TYPES);
const resolverCodec = abiCodec(RESOLVER_HASH_TYPES);

function cached(compute) {
  const cache = new WeakMap();
  return (object) => {
    if (!Object.isFrozen(object)) return compute(object);
    let value = cache.get(object);
    if (value === undefined) {
      value = compute(object);
      cache.set(object, value);
    }
    return value;
  };
}

/** `keccak256(abi.encode(TRANSFER_ID_TAG, channelAddress, paymentId, createNonce))`. */
export function encodeTransferId(channelAddress, paymentId, createNonce) {
  return transferIdCodec.encode([TRANSFER_ID_TAG, channelAddress, paymentId, createNonce]);
}

export function transferId(channelAddress, paymentId, createNonce) {
  return keccak256(encodeTransferId(channelAddress, paymentId, createNonce));
}

/** A transfer's id, derived from its channel, payment id and create nonce. */
export const transferIdOf = cached((t) => transferId(t.channelAddress, t.paymentId, t.createNonce));

/** `keccak256(encodedState)`: the `initialStateHash` field of the transfer struct. */
export const initialStateHashOf = cached((t) => keccak256(t.encodedState));

/** `abi.encode(TRANSFER_STATE_TAG, transfer)`: the preimage of the transfer hash (a merkle leaf). */
export function encodeTransferState(t) {
  return transferCodec.encode([
    TRANSFER_STATE_TAG,
    [
      t.channelAddress, transferIdOf(t), t.paymentId, t.transferDefinition, t.initiator, t.responder,
      t.assetId, t.balance, t.transferTimeout, initialStateHashOf(t), t.metaHash,
    ],
  ]);
}

export const transferHash = cached((t) => keccak256(encodeTransferState(t)));

/** The root of a state's active transfers. */
export const merkleRootOf = cached((state) => merkleRoot(state.transfers.map(transferHash)));

/** `abi.encode(CHANNEL_STATE_TAG, state)`: the preimage of the state hash. */
export function encodeChannelState(s) {
  return stateCodec.encode([
    CHANNEL_STATE_TAG,
    [
      s.channelAddress, s.chainId, s.node, s.user, s.assetIds, s.balances, s.processedDeposits,
      s.defundNonces, s.timeout, s.nonce, merkleRootOf(s),
    ],
  ]);
}

/** `stateHash`: what both parties sign (EIP-191) to make a state valid. */
export const channelStateHash = cached((state) => keccak256(encodeChannelState(state)));

/** `abi.encode(WITHDRAW_TAG, chainId, channelAddress, assetId, recipient, amount, nonce)`. */
export function encodeWithdrawCommitment(c) {
  return withdrawCodec.encode([WITHDRAW_TAG, c.chainId, c.channelAddress, c.assetId, c.recipient, c.amount, c.nonce]);
}

export const withdrawHash = cached((c) => keccak256(encodeWithdrawCommitment(c)));

/** `abi.encode(RESOLVER_TAG, chainId, transferHash, keccak256(encodedResolver))`. */
export function encodeResolverCommitment(chainId, transferHash_, encodedResolver) {
  return resolverCodec.encode([RESOLVER_TAG, chainId, transferHash_, keccak256(encodedResolver)]);
}

/** What a transfer's responder signs so a third party can defund the transfer with its resolver. */
export function resolverHash(chainId, transferHash_, encodedResolver) {
  return keccak256(encodeResolverCommitment(chainId, transferHash_, encodedResolver));
}

/** EIP-191 personal-sign digest of a 32-byte hash: what channel signatures are over. */
export function ethSignedMessageHash(messageHash) {
  return keccak256(concatHex(PERSONAL_PREFIX_32, messageHash));
}

const PERSONAL_PREFIX_32 = utf8('\x19Ethereum Signed Message:\n32');

// EIP-712 for the Signed transfer's Receipt.
export const EIP712_DOMAIN_TYPEHASH = keccak256(
  utf8('EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)'),
);
export const RECEIPT_TYPEHASH = keccak256(utf8('Receipt(bytes32 paymentId,bytes32 data)'));
export const SIGNED_DOMAIN_NAME = 'Connext Signed Transfer';
export const SIGNED_DOMAIN_VERSION = '1';
const domainCodec = abiCodec(['bytes32', 'bytes32', 'bytes32', 'uint256', 'address']);
const receiptCodec = abiCodec(['bytes32', 'bytes32', 'bytes32']);

export function receiptDomainSeparator(chainId, verifyingContract) {
  return keccak256(
    domainCodec.encode([
      EIP712_DOMAIN_TYPEHASH, keccak256(utf8(SIGNED_DOMAIN_NAME)), keccak256(utf8(SIGNED_DOMAIN_VERSION)),
      chainId, verifyingContract,
    ]),
  );
}

export function receiptStructHash(paymentId, data) {
  return keccak256(receiptCodec.encode([RECEIPT_TYPEHASH, paymentId, data]));
}

/** The EIP-712 digest a Signed transfer's signer signs (raw ECDSA, no EIP-191 prefix). */
export function receiptDigest(chainId, verifyingContract, paymentId, data) {
  return keccak256(
    concatHex('0x1901', receiptDomainSeparator(chainId, verifyingContract), receiptStructHash(paymentId, data)),
  );
}
