// Login: the card proves it holds an address's key by signing a node-issued nonce, as
// connext/protocol/auth.py defines it. The message is plain text a wallet can show; it names the node
// and the chain, so a signature for one node or chain is worthless at another. Signed EIP-191
// "personal sign" over the text (what eth_account's `encode_defunct(text=...)` signs).

import { MalformedError } from './errors.js';
import { concatHex, keccak256, utf8 } from './bytes.js';
import { normalizeAddress } from './address.js';
import { recoverDigest, signDigest } from './signing.js';

export const LOGIN_TITLE = 'Log in to the connext-py node';
export const MAX_NONCE_LENGTH = 64;

// Python's str.isalnum: letters and digits of any script.
const ALNUM = /^[\p{L}\p{N}]+$/u;

export function loginMessage({ nodeAddress, chainId, nonce }) {
  if (typeof nonce !== 'string' || !nonce || [...nonce].length > MAX_NONCE_LENGTH || !ALNUM.test(nonce)) {
    throw new MalformedError('a login nonce is 1 to 64 letters and digits', { field: 'nonce' });
  }
  if (typeof chainId !== 'bigint' || chainId < 0n) throw new MalformedError('the chain id is a BigInt', { field: 'chainId' });
  const node = normalizeAddress(nodeAddress, { field: 'nodeAddress' });
  return `${LOGIN_TITLE}\nnode: ${node}\nchain: ${chainId}\nnonce: ${nonce}`;
}

export function loginDigest(message) {
  const body = utf8(message);
  return keccak256(concatHex(utf8(`\x19Ethereum Signed Message:\n${body.length}`), body));
}

export function signLogin(message, privateKey) {
  return signDigest(loginDigest(message), privateKey);
}

/** The address that signed the login `message`; `bad_signature` for a malformed one. */
export function recoverLoginSigner(message, signature) {
  return recoverDigest(loginDigest(message), signature);
}
