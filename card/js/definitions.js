// Mirrors of the transfer definition contracts (Linked, HashLock, Signed, Withdraw), as
// connext/protocol/definitions.py: `create` and `resolve` mirror the contracts' functions, with the time,
// the chain id and the definition's address passed in; a revert is a ProtocolError. `resolve` returns
// `[toInitiator, toResponder]` and never more than it got. `accept` adds what an honest responder demands
// before it countersigns; it only refuses more.
//
// Encodings are canonical: a value is accepted only if re-encoding what was decoded gives the same bytes.

import { abiCodec } from './abi.js';
import { ZERO_ADDRESS, ZERO_BYTES32, byteLength, concatHex, isHex, keccak256, uintWord } from './bytes.js';
import { checksumAddress } from './address.js';
import {
  BadResolverError,
  BadSignatureError,
  BadTransferStateError,
  ExpiredError,
  UnknownDefinitionError,
} from './errors.js';
import { recoverReceiptSigner, recoverWithdrawSigner } from './signing.js';
import { DefinitionKind, makeWithdrawCommitment } from './types.js';

export const EMPTY_PREIMAGE_HASH = keccak256(ZERO_BYTES32);
export const WITHDRAW_STATE_TYPES = Object.freeze([
  'address', 'address', 'address', 'uint256', 'uint256', 'address', 'address', 'bytes',
]);

const signedResolverCodec = abiCodec(['bytes32', 'bytes']);
const withdrawStateCodec = abiCodec(WITHDRAW_STATE_TYPES);
const withdrawResolverCodec = abiCodec(['bytes']);

function decodeCanonical(codec, data, ErrorClass, what, types) {
  let values = null;
  if (isHex(data)) {
    try {
      values = codec.decode(data);
      if (codec.encode(values) !== data.toLowerCase()) values = null;
    } catch {
      values = null;
    }
  }
  if (values === null) throw new ErrorClass(`${what} is not the canonical ABI encoding of ${types}`);
  return values;
}

function bytes32(data, ErrorClass, what) {
  if (!isHex(data) || byteLength(data) !== 32) throw new ErrorClass(`${what} must be the ABI encoding of one bytes32 (32 bytes)`);
  return data.toLowerCase();
}

// -- encoded states and resolvers ----------------------------------------------------------------

export function encodeLinkedState({ lockHash }) {
  return lockHash;
}

export function decodeLinkedState(data) {
  return { lockHash: bytes32(data, BadTransferStateError, 'the Linked state') };
}

export function encodeHashLockState({ lockHash, expiry }) {
  return concatHex(lockHash, uintWord(expiry));
}

export function decodeHashLockState(data) {
  if (!isHex(data) || byteLength(data) !== 64) {
    throw new BadTransferStateError('the HashLock state must be abi.encode(bytes32, uint256)');
  }
  return { lockHash: data.slice(0, 66).toLowerCase(), expiry: BigInt('0x' + data.slice(66)) };
}

/** Linked and HashLock resolver; the all-zero preimage is the responder's cancel. */
export function encodePreimageResolver({ preimage }) {
  return preimage;
}

export function decodePreimageResolver(data) {
  return { preimage: bytes32(data, BadResolverError, 'the preimage resolver') };
}

export function encodeSignedState({ signer, paymentId }) {
  return concatHex('0x' + '00'.repeat(12), signer, paymentId).toLowerCase();
}

export function decodeSignedState(data) {
  if (!isHex(data) || byteLength(data) !== 64 || !/^0x0{24}$/.test(data.slice(0, 26))) {
    throw new BadTransferStateError('the Signed state must be abi.encode(address, bytes32)');
  }
  return { signer: checksumAddress('0x' + data.slice(26, 66)), paymentId: '0x' + data.slice(66).toLowerCase() };
}

/** Signed resolver; an empty signature is the responder's cancel. */
export function encodeSignedResolver({ data, signature }) {
  return signedResolverCodec.encode([data, signature]);
}

export function decodeSignedResolver(encoded) {
  const [data, signature] = decodeCanonical(signedResolverCodec, encoded, BadResolverError, 'the Signed resolver', 'bytes32, bytes');
  return { data, signature };
}

export function encodeWithdrawState(w) {
  return withdrawStateCodec.encode([
    w.channelAddress, w.assetId, w.recipient, w.amount, w.nonce, w.initiator, w.responder, w.initiatorSignature,
  ]);
}

export function decodeWithdrawState(data) {
  const [channelAddress, assetId, recipient, amount, nonce, initiator, responder, initiatorSignature] =
    decodeCanonical(withdrawStateCodec, data, BadTransferStateError, 'the Withdraw state', WITHDRAW_STATE_TYPES.join(', '));
  return { channelAddress, assetId, recipient, amount, nonce, initiator, responder, initiatorSignature };
}

export function withdrawStateCommitment(w, chainId) {
  return makeWithdrawCommitment({
    chainId, channelAddress: w.channelAddress, assetId: w.assetId, recipient: w.recipient, amount: w.amount, nonce: w.nonce,
  });
}

/** Withdraw resolver: the responder's signature on the commitment; empty is the cancel. */
export function encodeWithdrawResolver({ responderSignature }) {
  return withdrawResolverCodec.encode([responderSignature]);
}

export function decodeWithdrawResolver(data) {
  const [responderSignature] = decodeCanonical(withdrawResolverCodec, data, BadResolverError, 'the Withdraw resolver', 'bytes');
  return { responderSignature };
}

// -- create, accept, resolve ---------------------------------------------------------------------

function signedBy(expected, recover, ErrorClass, what) {
  let signer;
  try {
    signer = recover();
  } catch (error) {
    if (error instanceof BadSignatureError) throw new ErrorClass(`${what}: ${error.message}`);
    throw error;
  }
  if (signer !== expected) throw new ErrorClass(`${what} is not by ${expected}`);
}

function checkLockHash(lockHash) {
  if (lockHash === ZERO_BYTES32 || lockHash === EMPTY_PREIMAGE_HASH) {
    throw new BadTransferStateError('the lock hash is zero or opens with the cancel value (zero preimage)');
  }
}

function checkInitiatorSignature(withdraw, chainId) {
  const commitment = withdrawStateCommitment(withdraw, chainId);
  signedBy(
    withdraw.initiator,
    () => recoverWithdrawSigner(commitment, withdraw.initiatorSignature),
    BadTransferStateError,
    'the Withdraw initiator signature',
  );
}

function checkKind(kind) {
  if (!Object.values(DefinitionKind).includes(kind)) throw new UnknownDefinitionError(`${kind} is not a definition kind`);
}

/** Mirror of the definition contract's `create`: throws unless the transfer may be created. */
export function create(kind, balance, encodedState, { chainId }) {
  checkKind(kind);
  if (balance[1] !== 0n || balance[0] <= 0n) throw new BadTransferStateError('a transfer is created with balance [amount > 0, 0]');
  if (kind === DefinitionKind.LINKED) {
    checkLockHash(decodeLinkedState(encodedState).lockHash);
  } else if (kind === DefinitionKind.HASHLOCK) {
    const hashlock = decodeHashLockState(encodedState);
    checkLockHash(hashlock.lockHash);
    if (hashlock.expiry === 0n) throw new BadTransferStateError('a HashLock expiry must be above zero');
  } else if (kind === DefinitionKind.SIGNED) {
    if (decodeSignedState(encodedState).signer === ZERO_ADDRESS) throw new BadTransferStateError('the Signed signer is the zero address');
  } else {
    const withdraw = decodeWithdrawState(encodedState);
    if (withdraw.amount !== balance[0]) throw new BadTransferStateError('the Withdraw amount must equal the locked amount');
    checkInitiatorSignature(withdraw, chainId);
  }
}

/** `create` plus the responder's own checks of a new transfer in its channel. */
export function accept(kind, transfer, { chainId, now }) {
  create(kind, transfer.balance, transfer.encodedState, { chainId });
  if (kind === DefinitionKind.HASHLOCK) {
    const { expiry } = decodeHashLockState(transfer.encodedState);
    if (expiry <= now) throw new ExpiredError(`the hashlock expired at ${expiry} (now ${now})`);
  } else if (kind === DefinitionKind.WITHDRAW) {
    const withdraw = decodeWithdrawState(transfer.encodedState);
    if (
      withdraw.channelAddress !== transfer.channelAddress ||
      withdraw.assetId !== transfer.assetId ||
      withdraw.nonce !== transfer.createNonce ||
      withdraw.initiator !== transfer.initiator ||
      withdraw.responder !== transfer.responder
    ) {
      throw new BadTransferStateError(
        'the Withdraw state must name this channel, asset, create nonce, initiator and responder',
      );
    }
    if (withdraw.recipient === ZERO_ADDRESS || withdraw.recipient === transfer.channelAddress) {
      // Channel.withdraw refuses these recipients: the amount would leave the state and never the chain.
      throw new BadTransferStateError('the Withdraw recipient is the zero address or the channel itself');
    }
  }
}

/** Mirror of the definition contract's `resolve`: the final `[toInitiator, toResponder]`. */
export function resolve(kind, balance, encodedState, encodedResolver, { chainId, definition, now }) {
  checkKind(kind);
  const total = balance[0] + balance[1];
  const refund = [total, 0n];
  const paid = [0n, total];
  if (kind === DefinitionKind.LINKED || kind === DefinitionKind.HASHLOCK) {
    const { preimage } = decodePreimageResolver(encodedResolver);
    if (preimage === ZERO_BYTES32) return refund;
    let lockHash;
    if (kind === DefinitionKind.HASHLOCK) {
      const hashlock = decodeHashLockState(encodedState);
      if (now >= hashlock.expiry) throw new ExpiredError(`the hashlock expired at ${hashlock.expiry} (now ${now})`);
      lockHash = hashlock.lockHash;
    } else {
      lockHash = decodeLinkedState(encodedState).lockHash;
    }
    if (keccak256(preimage) !== lockHash) throw new BadResolverError('the preimage does not hash to the lock hash');
    return paid;
  }
  if (kind === DefinitionKind.SIGNED) {
    const signed = decodeSignedState(encodedState);
    const resolver = decodeSignedResolver(encodedResolver);
    if (resolver.signature === '0x') return refund;
    signedBy(
      signed.signer,
      () => recoverReceiptSigner(chainId, definition, signed.paymentId, resolver.data, resolver.signature),
      BadResolverError,
      'the receipt signature',
    );
    return paid;
  }
  const withdraw = decodeWithdrawState(encodedState);
  const { responderSignature } = decodeWithdrawResolver(encodedResolver);
  if (responderSignature === '0x') return refund;
  // Both signatures, as the contract checks: what resolves to [0, 0] here, Channel.withdraw can execute.
  checkInitiatorSignature(withdraw, chainId);
  const commitment = withdrawStateCommitment(withdraw, chainId);
  signedBy(
    withdraw.responder,
    () => recoverWithdrawSigner(commitment, responderSignature),
    BadResolverError,
    'the Withdraw responder signature',
  );
  return [0n, 0n];
}
