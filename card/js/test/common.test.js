import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as core from '../index.js';
import { common } from './vectors.js';

const typeString = (type) => (Array.isArray(type) ? `(${type.map(typeString).join(',')})` : type);

test('the domain tags equal the vectors', () => {
  const tags = Object.fromEntries(common().tags.map((t) => [t.name, t]));
  for (const name of ['CHANNEL_STATE_TAG', 'TRANSFER_STATE_TAG', 'WITHDRAW_TAG', 'RESOLVER_TAG', 'TRANSFER_ID_TAG']) {
    assert.equal(core[name], tags[name].value, name);
    assert.equal(core.keccak256(core.utf8(tags[name].preimage)), tags[name].value, name);
  }
});

test('the ABI type lists equal the vectors', () => {
  const types = common().abiTypes;
  assert.deepEqual(core.STATE_HASH_TYPES.map(typeString), types.stateHash);
  assert.deepEqual(core.TRANSFER_HASH_TYPES.map(typeString), types.transferHash);
  assert.deepEqual([...core.TRANSFER_ID_TYPES], types.transferId);
  assert.deepEqual([...core.WITHDRAW_HASH_TYPES], types.withdrawHash);
  assert.deepEqual([...core.RESOLVER_HASH_TYPES], types.resolverHash);
  assert.deepEqual([...core.definitions.WITHDRAW_STATE_TYPES], types.withdrawState);
});

test('every account address is derived from its private key', () => {
  for (const { name, privateKey, address } of common().accounts) {
    assert.equal(core.addressOf(privateKey), address, name);
    assert.equal(core.addressOfPublicKey(core.publicKeyOf(privateKey)), address, name);
  }
});

test('the vector addresses are checksummed and normalise from any single case', () => {
  for (const address of Object.values(common().addresses)) {
    assert.ok(core.isChecksumAddress(address), address);
    assert.equal(core.normalizeAddress(address.toLowerCase()), address);
    assert.equal(core.normalizeAddress('0x' + address.slice(2).toUpperCase()), address);
  }
});
