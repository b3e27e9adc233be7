// ECIES over secp256k1 with eciesjs: encrypt a short secret (a transfer's preimage) to a public key,
// byte-compatible with connext/protocol/ecies.py (eciespy's defaults):
//
//     ciphertext = ephemeral public key (65, uncompressed) ‖ nonce (16) ‖ tag (16) ‖ AES-256-GCM(message)
//     key        = HKDF-SHA256(ephemeral public key ‖ shared point, both uncompressed; no salt, no info)
//
// The configuration is pinned here (never eciesjs's mutable global). Like the Python core, `encrypt`
// takes its randomness from the caller (a fresh ephemeral key and nonce per message), so the same inputs
// give the same bytes; anything that does not decrypt is `bad_ciphertext`, never garbage.

import { Config } from 'eciesjs/config';
import { PrivateKey, PublicKey, decrypt as eciesDecrypt } from 'eciesjs';
import { aes256gcm } from '@ecies/ciphers/aes';
import { BadCiphertextError, MalformedError } from './errors.js';
import { concatHex, isHex, toBytes, toHex } from './bytes.js';

export const PUBLIC_KEY_BYTES = 65;
export const NONCE_BYTES = 16;
export const TAG_BYTES = 16;
export const OVERHEAD = PUBLIC_KEY_BYTES + NONCE_BYTES + TAG_BYTES;

export const ECIES_CONFIG = Object.freeze(
  Object.assign(new Config(), {
    ellipticCurve: 'secp256k1',
    isEphemeralKeyCompressed: false,
    isHkdfKeyCompressed: false,
    symmetricAlgorithm: 'aes-256-gcm',
    symmetricNonceLength: NONCE_BYTES,
  }),
);

function bytesOf(value, field, length = null) {
  if (!(value instanceof Uint8Array) && !isHex(value)) throw new MalformedError('must be bytes (0x-hex)', { field });
  const bytes = toBytes(value);
  if (length !== null && bytes.length !== length) throw new MalformedError(`must be ${length} bytes`, { field });
  return bytes;
}

function privateKey(value, field) {
  const bytes = bytesOf(value, field, 32);
  try {
    return new PrivateKey(bytes);
  } catch {
    throw new MalformedError('not a valid secp256k1 private key', { field });
  }
}

/** Encrypt `message` to `publicKey` (33 or 65 bytes). `ephemeralKey` (32 bytes) and `nonce` (16 bytes)
 * must be fresh random bytes for every message: reusing them reveals the message. Returns hex. */
export function encrypt(publicKey, message, { ephemeralKey, nonce }) {
  let recipient;
  try {
    recipient = new PublicKey(bytesOf(publicKey, 'publicKey'));
  } catch (error) {
    if (error instanceof MalformedError) throw error;
    throw new MalformedError('not a secp256k1 public key', { field: 'publicKey' });
  }
  const ephemeral = privateKey(ephemeralKey, 'ephemeralKey');
  const nonceBytes = bytesOf(nonce, 'nonce', NONCE_BYTES);
  const key = ephemeral.encapsulate(recipient, ECIES_CONFIG.isHkdfKeyCompressed);
  const sealed = aes256gcm(key, nonceBytes).encrypt(bytesOf(message, 'message')); // ciphertext ‖ tag
  const cut = sealed.length - TAG_BYTES;
  return concatHex(
    ephemeral.publicKey.toBytes(ECIES_CONFIG.isEphemeralKeyCompressed),
    nonceBytes,
    sealed.subarray(cut),
    sealed.subarray(0, cut),
  );
}

/** The message `encrypt` sealed for this key (hex); `bad_ciphertext` when it was not, or was altered. */
export function decrypt(privateKeyValue, ciphertext) {
  const key = privateKey(privateKeyValue, 'privateKey');
  if (!isHex(ciphertext) && !(ciphertext instanceof Uint8Array)) {
    throw new BadCiphertextError('the ciphertext must be bytes', { field: 'ciphertext' });
  }
  const data = toBytes(ciphertext);
  if (data.length < OVERHEAD) throw new BadCiphertextError('the ciphertext is too short', { field: 'ciphertext' });
  if (data[0] !== 4) throw new BadCiphertextError('the ephemeral key must be uncompressed', { field: 'ciphertext' });
  try {
    return toHex(eciesDecrypt(key.secret, data, ECIES_CONFIG));
  } catch {
    throw new BadCiphertextError('the ciphertext does not decrypt with this key', { field: 'ciphertext' });
  }
}
