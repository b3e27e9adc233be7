// The card's key: a BIP-39 mnemonic and the Ethereum account BIP-32 derives from it (m/44'/60'/0'/0/i,
// the path of MetaMask, anvil and eth-account). Pure: the caller supplies the entropy (crypto.getRandomValues
// in the page). Kept out of index.js so a page that never handles a phrase does not carry the word list.

import { entropyToMnemonic, mnemonicToSeed, validateMnemonic } from '@scure/bip39';
import { wordlist } from '@scure/bip39/wordlists/english.js';
import { HDKey } from '@scure/bip32';
import { MalformedError } from './errors.js';
import { toBytes, toHex } from './bytes.js';

export const ETH_DERIVATION_PATH = "m/44'/60'/0'/0";

/** The phrase for 16 (12 words) or 32 (24 words) bytes of fresh entropy. */
export function mnemonicFromEntropy(entropy) {
  const bytes = toBytes(entropy, { field: 'entropy' });
  if (bytes.length !== 16 && bytes.length !== 32) throw new MalformedError('entropy is 16 or 32 bytes', { field: 'entropy' });
  return entropyToMnemonic(bytes, wordlist);
}

/** The phrase as the word list spells it (lowercase, single spaces), or `malformed`. */
export function normalizeMnemonic(phrase) {
  const words = typeof phrase === 'string' ? phrase.trim().toLowerCase().split(/\s+/) : [];
  const normalized = words.join(' ');
  if (!validateMnemonic(normalized, wordlist)) {
    throw new MalformedError('not a BIP-39 English phrase (a word or the checksum is wrong)', { field: 'mnemonic' });
  }
  return normalized;
}

export function isValidMnemonic(phrase) {
  try {
    normalizeMnemonic(phrase);
    return true;
  } catch {
    return false;
  }
}

/** The private key (hex) of account `index` of the phrase (PBKDF2 runs asynchronously). */
export async function privateKeyFromMnemonic(phrase, { index = 0, passphrase = '' } = {}) {
  if (!Number.isSafeInteger(index) || index < 0 || index >= 2 ** 31) {
    throw new MalformedError('an account index is in [0, 2**31)', { field: 'index' });
  }
  const seed = await mnemonicToSeed(normalizeMnemonic(phrase), passphrase);
  const key = HDKey.fromMasterSeed(seed).derive(`${ETH_DERIVATION_PATH}/${index}`).privateKey;
  return toHex(key);
}
