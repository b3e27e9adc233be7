// The card's key vault: a BIP-39 phrase made in the page, kept in localStorage only encrypted
// (AES-GCM under a PBKDF2-SHA256 key of the user's passphrase). The phrase and the key leave this
// module only to the page's memory; nothing here touches the network.
//
// Stored record (localStorage "card.vault", JSON), version 1:
//   {version: 1, address, path, kdf: {name: "PBKDF2", hash: "SHA-256", iterations, salt},
//    cipher: {name: "AES-GCM", iv}, ciphertext}
// salt (16 bytes), iv (12 bytes) and ciphertext in base64; the plaintext is the phrase (UTF-8).
// Every field but the ciphertext is authenticated as AES-GCM's additional data, so a record whose
// address, path or iteration count was changed does not decrypt.
import { HDKey } from '@scure/bip32';
import { entropyToMnemonic, mnemonicToSeedWebcrypto, validateMnemonic } from '@scure/bip39';
import { wordlist } from '@scure/bip39/wordlists/english.js';
import { addr } from 'micro-eth-signer';

export const VAULT_KEY = 'card.vault';
export const VAULT_VERSION = 1;
export const PBKDF2_ITERATIONS = 600_000;
export const DERIVATION_PATH = "m/44'/60'/0'/0/0";
export const MIN_PASSPHRASE_LENGTH = 8;
const PHRASE_LENGTHS = [12, 15, 18, 21, 24];

export class VaultError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'VaultError';
    this.code = code;
  }
}

function store(storage) {
  const chosen = storage ?? globalThis.localStorage;
  if (!chosen) throw new VaultError('no_storage', 'This browser keeps no local storage for the card.');
  return chosen;
}

const encoder = new TextEncoder();
const toBase64 = (bytes) => btoa(String.fromCharCode(...bytes));
const fromBase64 = (text) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0));

function checkPassphrase(passphrase) {
  if (typeof passphrase !== 'string' || [...passphrase].length < MIN_PASSPHRASE_LENGTH) {
    throw new VaultError('weak_passphrase', `Choose a passphrase of at least ${MIN_PASSPHRASE_LENGTH} characters.`);
  }
}

/** The phrase's words, normalized (NFKD, lower case, single spaces), or a VaultError saying what is wrong. */
export function checkPhrase(phrase) {
  const words = String(phrase ?? '').normalize('NFKD').toLowerCase().trim().split(/\s+/).filter(Boolean);
  if (!PHRASE_LENGTHS.includes(words.length)) {
    throw new VaultError('bad_phrase', `A backup phrase has 12 words (or 15, 18, 21, 24); this one has ${words.length}.`);
  }
  const unknown = words.findIndex((word) => !wordlist.includes(word));
  if (unknown !== -1) {
    throw new VaultError('bad_phrase', `“${words[unknown]}” (word ${unknown + 1}) is not in the BIP-39 English word list.`);
  }
  const mnemonic = words.join(' ');
  if (!validateMnemonic(mnemonic, wordlist)) {
    throw new VaultError('bad_phrase', 'The phrase’s checksum does not match: a word is wrong, or two are swapped.');
  }
  return mnemonic;
}

/** The Ethereum account at m/44'/60'/0'/0/0 of a phrase: {address (checksummed), privateKey (32 bytes)}. */
export async function deriveAccount(mnemonic) {
  const seed = await mnemonicToSeedWebcrypto(mnemonic);
  const privateKey = HDKey.fromMasterSeed(seed).derive(DERIVATION_PATH).privateKey;
  seed.fill(0);
  if (!privateKey) throw new VaultError('corrupt_vault', 'The phrase gave no private key.');
  return { address: addr.fromPrivateKey(privateKey), privateKey };
}

function additionalData(record) {
  const { version, address, path, kdf, cipher } = record;
  return encoder.encode(
    JSON.stringify([version, address, path, kdf.name, kdf.hash, kdf.iterations, kdf.salt, cipher.name, cipher.iv]),
  );
}

async function passphraseKey(passphrase, salt, iterations) {
  const material = await crypto.subtle.importKey('raw', encoder.encode(passphrase.normalize('NFKC')), 'PBKDF2', false, [
    'deriveKey',
  ]);
  return crypto.subtle.deriveKey(
    { name: 'PBKDF2', hash: 'SHA-256', salt, iterations },
    material,
    { name: 'AES-GCM', length: 256 },
    false,
    ['encrypt', 'decrypt'],
  );
}

async function seal(mnemonic, passphrase, address) {
  const salt = crypto.getRandomValues(new Uint8Array(16));
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const record = {
    version: VAULT_VERSION,
    address,
    path: DERIVATION_PATH,
    kdf: { name: 'PBKDF2', hash: 'SHA-256', iterations: PBKDF2_ITERATIONS, salt: toBase64(salt) },
    cipher: { name: 'AES-GCM', iv: toBase64(iv) },
  };
  const key = await passphraseKey(passphrase, salt, PBKDF2_ITERATIONS);
  const ciphertext = await crypto.subtle.encrypt(
    { name: 'AES-GCM', iv, additionalData: additionalData(record) },
    key,
    encoder.encode(mnemonic),
  );
  return { ...record, ciphertext: toBase64(new Uint8Array(ciphertext)) };
}

function readRecord(storage) {
  const text = store(storage).getItem(VAULT_KEY);
  if (text === null) throw new VaultError('no_vault', 'This browser holds no card yet.');
  let record;
  try {
    record = JSON.parse(text);
  } catch {
    throw new VaultError('corrupt_vault', 'The stored card is damaged (not JSON).');
  }
  if (record?.version !== VAULT_VERSION) {
    throw new VaultError('unsupported_vault', `The stored card has format version ${record?.version}; this card reads ${VAULT_VERSION}.`);
  }
  const { kdf, cipher } = record;
  if (kdf?.name !== 'PBKDF2' || kdf.hash !== 'SHA-256' || cipher?.name !== 'AES-GCM' || record.path !== DERIVATION_PATH) {
    throw new VaultError('unsupported_vault', 'The stored card uses a key derivation or cipher this card does not read.');
  }
  if (!Number.isSafeInteger(kdf.iterations) || kdf.iterations < PBKDF2_ITERATIONS) {
    throw new VaultError('unsupported_vault', `The stored card is encrypted with fewer than ${PBKDF2_ITERATIONS} PBKDF2 iterations.`);
  }
  return record;
}

async function open(passphrase, storage) {
  const record = readRecord(storage);
  let salt, iv, ciphertext;
  try {
    [salt, iv, ciphertext] = [record.kdf.salt, record.cipher.iv, record.ciphertext].map(fromBase64);
  } catch {
    throw new VaultError('corrupt_vault', 'The stored card is damaged (bad base64).');
  }
  const key = await passphraseKey(String(passphrase ?? ''), salt, record.kdf.iterations);
  let plaintext;
  try {
    plaintext = await crypto.subtle.decrypt({ name: 'AES-GCM', iv, additionalData: additionalData(record) }, key, ciphertext);
  } catch (error) {
    // AES-GCM cannot tell a wrong key from a changed record: both fail its authentication.
    if (error?.name === 'OperationError') throw new VaultError('wrong_passphrase', 'Wrong passphrase: the card stays locked.');
    throw error;
  }
  const mnemonic = new TextDecoder().decode(plaintext);
  const account = await deriveAccount(mnemonic);
  if (account.address !== record.address) {
    throw new VaultError('corrupt_vault', 'The stored card’s address does not match its key.');
  }
  return { mnemonic, account };
}

export function hasVault(storage) {
  return store(storage).getItem(VAULT_KEY) !== null;
}

/** The address the stored card was made for (public: shown on the unlock screen), or null. */
export function storedAddress(storage) {
  return hasVault(storage) ? readRecord(storage).address : null;
}

async function keep(mnemonic, passphrase, storage) {
  const account = await deriveAccount(mnemonic);
  const record = await seal(mnemonic, passphrase, account.address);
  if (hasVault(storage)) throw new VaultError('vault_exists', 'This browser already holds a card: burn it first.');
  store(storage).setItem(VAULT_KEY, JSON.stringify(record));
  return account;
}

/** A new card: a 12-word phrase from 128 bits of crypto.getRandomValues. Returns {address, privateKey, phrase}. */
export async function createVault(passphrase, storage) {
  checkPassphrase(passphrase);
  if (hasVault(storage)) throw new VaultError('vault_exists', 'This browser already holds a card: burn it first.');
  const phrase = entropyToMnemonic(crypto.getRandomValues(new Uint8Array(16)), wordlist);
  return { ...(await keep(phrase, passphrase, storage)), phrase };
}

/** A card restored from its phrase, kept under a new passphrase. Returns {address, privateKey}. */
export async function importPhrase(phrase, passphrase, storage) {
  const mnemonic = checkPhrase(phrase);
  checkPassphrase(passphrase);
  if (hasVault(storage)) throw new VaultError('vault_exists', 'This browser already holds a card: burn it first.');
  return keep(mnemonic, passphrase, storage);
}

/** {address, privateKey}; a wrong passphrase throws VaultError('wrong_passphrase') and changes nothing. */
export async function unlock(passphrase, storage) {
  return (await open(passphrase, storage)).account;
}

export async function revealPhrase(passphrase, storage) {
  return (await open(passphrase, storage)).mnemonic;
}

/** Wipes everything the card keeps in this browser (the origin's local storage is the card's). */
export function burn(storage) {
  store(storage).clear();
}
