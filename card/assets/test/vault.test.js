import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import * as vault from '../vault.js';

/** localStorage's shape, in memory. */
class MemoryStorage {
  #items = new Map();
  getItem(key) {
    return this.#items.has(key) ? this.#items.get(key) : null;
  }
  setItem(key, value) {
    this.#items.set(key, String(value));
  }
  removeItem(key) {
    this.#items.delete(key);
  }
  clear() {
    this.#items.clear();
  }
  get length() {
    return this.#items.size;
  }
}

const PASSPHRASE = 'correct horse battery';
// anvil's (and Hardhat's) dev phrase: its first account is well known.
const DEV_PHRASE = 'test test test test test test test test test test test junk';
const DEV_ADDRESS = '0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266';
const DEV_KEY = 'ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80';
const hex = (bytes) => Buffer.from(bytes).toString('hex');

describe('the vault', () => {
  test('a new card: 12 words, kept encrypted, unlocked with its passphrase to the same account', async () => {
    const storage = new MemoryStorage();
    assert.equal(vault.hasVault(storage), false);
    const created = await vault.createVault(PASSPHRASE, storage);
    assert.equal(created.phrase.split(' ').length, 12);
    assert.equal(vault.checkPhrase(created.phrase), created.phrase);
    assert.equal(vault.hasVault(storage), true);

    const stored = storage.getItem(vault.VAULT_KEY);
    const record = JSON.parse(stored);
    assert.equal(record.version, 1);
    assert.equal(record.address, created.address);
    assert.equal(record.path, "m/44'/60'/0'/0/0");
    assert.deepEqual({ ...record.kdf, salt: undefined }, { name: 'PBKDF2', hash: 'SHA-256', iterations: 600000, salt: undefined });
    assert.equal(Buffer.from(record.kdf.salt, 'base64').length, 16);
    assert.equal(Buffer.from(record.cipher.iv, 'base64').length, 12);
    assert.equal(record.cipher.name, 'AES-GCM');
    // Nothing else is kept: the phrase only as ciphertext (its length plus GCM's 16-byte tag).
    assert.deepEqual(Object.keys(record).sort(), ['address', 'cipher', 'ciphertext', 'kdf', 'path', 'version']);
    assert.equal(Buffer.from(record.ciphertext, 'base64').length, Buffer.byteLength(created.phrase) + 16);
    assert.ok(!stored.includes(created.phrase.split(' ').slice(0, 2).join(' ')));
    assert.ok(!stored.includes(hex(created.privateKey)));

    const unlocked = await vault.unlock(PASSPHRASE, storage);
    assert.equal(unlocked.address, created.address);
    assert.equal(hex(unlocked.privateKey), hex(created.privateKey));
    assert.equal(await vault.revealPhrase(PASSPHRASE, storage), created.phrase);
  });

  test('a wrong passphrase is refused and changes nothing', async () => {
    const storage = new MemoryStorage();
    await vault.createVault(PASSPHRASE, storage);
    const before = storage.getItem(vault.VAULT_KEY);
    for (const attempt of [() => vault.unlock('not the passphrase', storage), () => vault.revealPhrase('', storage)]) {
      await assert.rejects(attempt, (error) => error.code === 'wrong_passphrase' && /Wrong passphrase/.test(error.message));
    }
    assert.equal(storage.getItem(vault.VAULT_KEY), before);
    assert.ok(await vault.unlock(PASSPHRASE, storage));
  });

  test('two cards of the same passphrase share no salt, iv or ciphertext', async () => {
    const [a, b] = [new MemoryStorage(), new MemoryStorage()];
    await vault.importPhrase(DEV_PHRASE, PASSPHRASE, a);
    await vault.importPhrase(DEV_PHRASE, PASSPHRASE, b);
    const [ra, rb] = [a, b].map((storage) => JSON.parse(storage.getItem(vault.VAULT_KEY)));
    assert.notEqual(ra.kdf.salt, rb.kdf.salt);
    assert.notEqual(ra.cipher.iv, rb.cipher.iv);
    assert.notEqual(ra.ciphertext, rb.ciphertext);
  });

  test("importing anvil's dev phrase gives its first account (m/44'/60'/0'/0/0)", async () => {
    const storage = new MemoryStorage();
    const account = await vault.importPhrase(`  ${DEV_PHRASE.toUpperCase().replaceAll(' ', '  ')} `, PASSPHRASE, storage);
    assert.equal(account.address, DEV_ADDRESS);
    assert.equal(hex(account.privateKey), DEV_KEY);
    assert.equal(await vault.revealPhrase(PASSPHRASE, storage), DEV_PHRASE);
  });

  for (const [what, phrase, message] of [
    ['too few words', 'test test test', /12 words .* this one has 3/],
    ['a word not in the list', DEV_PHRASE.replace('junk', 'junx'), /“junx” \(word 12\) is not in the BIP-39 English word list/],
    ['a bad checksum', DEV_PHRASE.replace('junk', 'test'), /checksum does not match/],
    ['nothing', '', /this one has 0/],
  ]) {
    test(`a phrase with ${what} is refused, nothing stored`, async () => {
      const storage = new MemoryStorage();
      await assert.rejects(vault.importPhrase(phrase, PASSPHRASE, storage), (error) => error.code === 'bad_phrase' && message.test(error.message));
      assert.equal(storage.length, 0);
    });
  }

  test('a short passphrase is refused', async () => {
    const storage = new MemoryStorage();
    await assert.rejects(vault.createVault('short', storage), (error) => error.code === 'weak_passphrase');
    assert.equal(storage.length, 0);
  });

  test('a card is not replaced by creating or importing another', async () => {
    const storage = new MemoryStorage();
    await vault.importPhrase(DEV_PHRASE, PASSPHRASE, storage);
    const before = storage.getItem(vault.VAULT_KEY);
    await assert.rejects(vault.createVault(PASSPHRASE, storage), (error) => error.code === 'vault_exists');
    await assert.rejects(vault.importPhrase(DEV_PHRASE, PASSPHRASE, storage), (error) => error.code === 'vault_exists');
    assert.equal(storage.getItem(vault.VAULT_KEY), before);
  });

  test('a record whose address, iterations or ciphertext was changed does not open', async () => {
    const storage = new MemoryStorage();
    await vault.importPhrase(DEV_PHRASE, PASSPHRASE, storage);
    const record = JSON.parse(storage.getItem(vault.VAULT_KEY));
    const ciphertext = Buffer.from(record.ciphertext, 'base64');
    ciphertext[0] ^= 1;
    const tampered = [
      [{ ...record, address: '0x52908400098527886E0F7030069857D2E4169EE7' }, 'wrong_passphrase'],
      [{ ...record, kdf: { ...record.kdf, iterations: 600001 } }, 'wrong_passphrase'],
      [{ ...record, kdf: { ...record.kdf, iterations: 1000 } }, 'unsupported_vault'],
      [{ ...record, version: 2 }, 'unsupported_vault'],
      [{ ...record, ciphertext: ciphertext.toString('base64') }, 'wrong_passphrase'],
    ];
    for (const [changed, code] of tampered) {
      storage.setItem(vault.VAULT_KEY, JSON.stringify(changed));
      await assert.rejects(vault.unlock(PASSPHRASE, storage), (error) => error.code === code, JSON.stringify(changed));
    }
  });

  test('burning wipes the card', async () => {
    const storage = new MemoryStorage();
    await vault.createVault(PASSPHRASE, storage);
    vault.burn(storage);
    assert.equal(vault.hasVault(storage), false);
    assert.equal(storage.length, 0);
    await assert.rejects(vault.unlock(PASSPHRASE, storage), (error) => error.code === 'no_vault');
  });
});
