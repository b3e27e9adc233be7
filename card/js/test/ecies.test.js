import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encrypt as eciesjsEncrypt } from 'eciesjs';
import * as core from '../index.js';
import { keyByName, load } from './vectors.js';

const { ecies } = core;
const vectors = load('ecies');

test("the pinned ECIES configuration is eciespy's default layout", () => {
  assert.equal(ecies.ECIES_CONFIG.isEphemeralKeyCompressed, false);
  assert.equal(ecies.ECIES_CONFIG.isHkdfKeyCompressed, false);
  assert.equal(ecies.ECIES_CONFIG.symmetricAlgorithm, 'aes-256-gcm');
  assert.equal(ecies.ECIES_CONFIG.symmetricNonceLength, 16);
  assert.equal(ecies.ECIES_CONFIG.ephemeralKeySize, 65);
  assert.ok(Object.isFrozen(ecies.ECIES_CONFIG));
});

for (const c of vectors.cases) {
  test(`ECIES "${c.name}": JS decrypts the Python ciphertext`, () => {
    assert.equal(ecies.decrypt(keyByName(c.recipient), c.ciphertext), c.message);
  });

  test(`ECIES "${c.name}": JS encrypts to the same bytes with the same randomness`, () => {
    assert.equal(ecies.encrypt(c.publicKey, c.message, { ephemeralKey: c.ephemeralKey, nonce: c.nonce }), c.ciphertext);
  });
}

test("eciesjs's own encrypt (its random key and nonce) decrypts with the core, so the layouts agree", () => {
  const key = keyByName('user');
  const message = core.keccak256('0x1234');
  const sealed = core.toHex(eciesjsEncrypt(core.toBytes(core.publicKeyOf(key)), core.toBytes(message)));
  assert.equal(sealed.length, 2 + 2 * (ecies.OVERHEAD + 32));
  assert.equal(ecies.decrypt(key, sealed), message);
});

test('the recipient public key recovered from a state signature encrypts to that recipient', () => {
  const state = core.channelStateFromJson(load('channel_states').cases[1].state);
  const signature = load('channel_states').cases[1].signatures.user;
  const publicKey = core.recoverPublicKey(core.channelStateHash(state), signature);
  assert.equal(core.addressOfPublicKey(publicKey), state.user);
  const sealed = ecies.encrypt(publicKey, '0xabcd', { ephemeralKey: keyByName('stranger'), nonce: '0x' + '11'.repeat(16) });
  assert.equal(ecies.decrypt(keyByName('user'), sealed), '0xabcd');
});

for (const r of vectors.refusals) {
  test(`ECIES refusal "${r.name}" fails with ${r.error}`, () => {
    assert.throws(() => ecies.decrypt(keyByName(r.recipient), r.ciphertext), { code: r.error });
  });
}

test('ECIES refuses malformed keys and randomness as malformed, and garbage ciphertext as bad_ciphertext', () => {
  const c = vectors.cases[0];
  const options = { ephemeralKey: c.ephemeralKey, nonce: c.nonce };
  assert.throws(() => ecies.decrypt('0x1234', c.ciphertext), { code: 'malformed' });
  assert.throws(() => ecies.decrypt('0x' + '00'.repeat(32), c.ciphertext), { code: 'malformed' });
  assert.throws(() => ecies.decrypt(keyByName('user'), 'not hex'), { code: 'bad_ciphertext' });
  assert.throws(() => ecies.encrypt('0x04' + '00'.repeat(64), c.message, options), { code: 'malformed' });
  assert.throws(() => ecies.encrypt(c.publicKey, c.message, { ...options, nonce: '0x00' }), { code: 'malformed' });
  assert.throws(() => ecies.encrypt(c.publicKey, c.message, { ...options, ephemeralKey: '0x' + 'ff'.repeat(32) }), { code: 'malformed' });
  assert.throws(() => ecies.encrypt(c.publicKey, 'zz', options), { code: 'malformed' });
  const offCurve = '0x04' + '01'.repeat(64) + c.ciphertext.slice(2 + 130);
  assert.throws(() => ecies.decrypt(keyByName('user'), offCurve), { code: 'bad_ciphertext' });
});
