// ECDSA signing and recovery on secp256k1 (@noble/curves), as OpenZeppelin `ECDSA` accepts them.
//
// A signature is 65 bytes `r ‖ s ‖ v` (hex) with `v ∈ {27, 28}`, `0 < r < n` and `0 < s ≤ n/2` (low s);
// anything else is `bad_signature`, never normalised. Signing is deterministic (RFC 6979, no extra
// entropy), so it gives the same bytes as the Python core and eth-account. Channel objects are signed
// EIP-191 over their 32-byte hash; the Signed transfer's Receipt is signed raw over its EIP-712 digest.

import { secp256k1 } from '@noble/curves/secp256k1.js';
import { keccak_256 } from '@noble/hashes/sha3.js';
import { BadSignatureError, MalformedError } from './errors.js';
import { concatHex, isHex, toBytes, toHex } from './bytes.js';
import { checksumAddress } from './address.js';
import {
  channelStateHash,
  ethSignedMessageHash,
  receiptDigest,
  resolverHash,
  withdrawHash,
} from './encoding.js';

export const SECP256K1_N = secp256k1.Point.CURVE().n;
export const SECP256K1_HALF_N = SECP256K1_N >> 1n;

function privateKeyBytes(key) {
  let bytes;
  try {
    bytes = key instanceof Uint8Array ? key : toBytes(key);
  } catch {
    throw new MalformedError('a private key is 32 bytes', { field: 'privateKey' });
  }
  if (bytes.length !== 32) throw new MalformedError('a private key is 32 bytes', { field: 'privateKey' });
  if (!secp256k1.utils.isValidSecretKey(bytes)) {
    throw new MalformedError('not a valid secp256k1 private key', { field: 'privateKey' });
  }
  return bytes;
}

function digestBytes(digest) {
  if (!isHex(digest) || digest.length !== 66) throw new MalformedError('a digest is 32 bytes', { field: 'digest' });
  return toBytes(digest);
}

/** The address of a secp256k1 public key (33 or 65 bytes, hex or Uint8Array). */
export function addressOfPublicKey(publicKey) {
  let point;
  try {
    point = secp256k1.Point.fromBytes(toBytes(publicKey));
  } catch {
    throw new MalformedError('not a secp256k1 public key', { field: 'publicKey' });
  }
  return checksumAddress(toHex(keccak_256(point.toBytes(false).subarray(1)).subarray(12)));
}

/** The uncompressed public key (65 bytes, hex) of a private key. */
export function publicKeyOf(privateKey) {
  return toHex(secp256k1.getPublicKey(privateKeyBytes(privateKey), false));
}

export function addressOf(privateKey) {
  return addressOfPublicKey(secp256k1.getPublicKey(privateKeyBytes(privateKey), false));
}

/** Raw ECDSA over a 32-byte digest: `r ‖ s ‖ v`, low s, v in {27, 28}. */
export function signDigest(digest, privateKey) {
  const signature = secp256k1.sign(digestBytes(digest), privateKeyBytes(privateKey), {
    prehash: false,
    lowS: true,
    extraEntropy: false,
    format: 'recovered',
  });
  const recovery = signature[0];
  // Recovery ids 2 and 3 (r ≥ n) cannot be written as v ∈ {27, 28}; the chance is about 2^-128.
  if (recovery > 1) throw new BadSignatureError('the signature has a recovery id above 1');
  return concatHex(signature.subarray(1), Uint8Array.of(27 + recovery));
}

/** Reject what OpenZeppelin `ECDSA.recover` rejects: wrong length, bad v, zero r/s, high s. */
export function checkSignatureForm(signature) {
  if (!isHex(signature) || signature.length !== 2 + 130) throw new BadSignatureError('a signature is 65 bytes r ‖ s ‖ v');
  const v = parseInt(signature.slice(130), 16);
  if (v !== 27 && v !== 28) throw new BadSignatureError('signature v must be 27 or 28');
  const r = BigInt('0x' + signature.slice(2, 66));
  const s = BigInt('0x' + signature.slice(66, 130));
  if (!(r > 0n && r < SECP256K1_N) || !(s > 0n && s <= SECP256K1_HALF_N)) {
    throw new BadSignatureError('signature r or s out of range (s must be in the lower half)');
  }
  return v - 27;
}

function recoverPoint(digest, signature) {
  const recovery = checkSignatureForm(signature);
  const bytes = toBytes(signature);
  const recovered = concatHex(Uint8Array.of(recovery), bytes.subarray(0, 64));
  try {
    return secp256k1.recoverPublicKey(toBytes(recovered), digestBytes(digest), { prehash: false });
  } catch (error) {
    if (error instanceof MalformedError) throw error;
    throw new BadSignatureError('no public key recovers from this signature');
  }
}

/** The address that made `signature` over the raw 32-byte `digest`. */
export function recoverDigest(digest, signature) {
  return addressOfPublicKey(recoverPoint(digest, signature));
}

/** EIP-191 personal signature over a 32-byte hash (`encode_defunct(primitive=hash)`). */
export function signHash(messageHash, privateKey) {
  return signDigest(ethSignedMessageHash(messageHash), privateKey);
}

export function recoverHash(messageHash, signature) {
  return recoverDigest(ethSignedMessageHash(messageHash), signature);
}

/** The uncompressed public key (65 bytes) behind an EIP-191 signature over a 32-byte hash: what a
 * sender encrypts a preimage to. */
export function recoverPublicKey(messageHash, signature) {
  const point = recoverPoint(ethSignedMessageHash(messageHash), signature);
  return toHex(secp256k1.Point.fromBytes(point).toBytes(false));
}

export function signState(state, privateKey) {
  return signHash(channelStateHash(state), privateKey);
}

/** The address that signed `state` with `signature`. */
export function recoverStateSigner(state, signature) {
  return recoverHash(channelStateHash(state), signature);
}

/** Raise `bad_signature` unless `expected` signed `state` with `signature`. */
export function verifyStateSignature(state, signature, expected, { field = 'signature' } = {}) {
  const signer = recoverStateSigner(state, signature);
  if (signer !== expected) throw new BadSignatureError(`the signature is by ${signer}, not ${expected}`, { field });
}

/** Raise `bad_signature` unless node and user both signed `state` (what the chain requires). */
export function verifyStateSignatures(state, nodeSignature, userSignature) {
  if (recoverStateSigner(state, nodeSignature) !== state.node) {
    throw new BadSignatureError("the node signature is not by the channel's node", { field: 'nodeSignature' });
  }
  if (recoverStateSigner(state, userSignature) !== state.user) {
    throw new BadSignatureError("the user signature is not by the channel's user", { field: 'userSignature' });
  }
}

export function signWithdraw(commitment, privateKey) {
  return signHash(withdrawHash(commitment), privateKey);
}

export function recoverWithdrawSigner(commitment, signature) {
  return recoverHash(withdrawHash(commitment), signature);
}

/** The responder's consent that anyone may defund the transfer on chain with this resolver. */
export function signResolver(chainId, transferHash, encodedResolver, privateKey) {
  return signHash(resolverHash(chainId, transferHash, encodedResolver), privateKey);
}

export function recoverResolverSigner(chainId, transferHash, encodedResolver, signature) {
  return recoverHash(resolverHash(chainId, transferHash, encodedResolver), signature);
}

/** EIP-712 `Receipt(paymentId, data)` signature for a Signed transfer's resolver. */
export function signReceipt(chainId, verifyingContract, paymentId, data, privateKey) {
  return signDigest(receiptDigest(chainId, verifyingContract, paymentId, data), privateKey);
}

export function recoverReceiptSigner(chainId, verifyingContract, paymentId, data, signature) {
  return recoverDigest(receiptDigest(chainId, verifyingContract, paymentId, data), signature);
}

