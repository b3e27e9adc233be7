// Malformed and hostile input: each refusal asserts the code Python gives for the same input.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as core from '../index.js';
import { account, load } from './vectors.js';

const history = load('updates');
const step = (name) => history.steps.find((s) => s.name.startsWith(name));
const afterTokenDeposit = () => core.channelStateFromJson(step('node deposits a token').state);
const linkedCreate = () => step('user locks a Linked transfer').update;
const linkedContext = () => core.updateContextFromJson(step('user locks a Linked transfer').context);

const refused = (fn, code) => assert.throws(fn, (error) => {
  assert.ok(error instanceof core.ProtocolError, `not a ProtocolError: ${error}`);
  assert.equal(error.code, code, String(error));
  return true;
});

test('update JSON with bad hex, wrong lengths or bad addresses is malformed, naming the field', () => {
  const base = linkedCreate();
  const cases = [
    [{ paymentId: '0x' + 'zz'.repeat(32) }, 'paymentId'],
    [{ paymentId: base.paymentId.slice(0, -2) }, 'paymentId'],
    [{ paymentId: base.paymentId.slice(2) }, 'paymentId'],
    [{ encodedState: '0x123' }, 'encodedState'],
    [{ metaHash: '0x' }, 'metaHash'],
    [{ assetId: '0x1234' }, 'assetId'],
    [{ initiator: base.initiator.slice(0, 41) + (base.initiator.endsWith('b') ? 'B' : 'b') }, 'initiator'],
    [{ transferDefinition: 42 }, 'transferDefinition'],
  ];
  for (const [change, field] of cases) {
    assert.throws(() => core.updateFromJson({ ...base, ...change }), { code: 'malformed', field }, JSON.stringify(change));
  }
});

test('a mixed-case address with a wrong EIP-55 checksum is malformed; one case is normalised', () => {
  const address = account('user').address; // mixed case
  const i = [...address].findIndex((ch, k) => k > 1 && /[a-f]/i.test(ch));
  const ch = address[i];
  const broken = address.slice(0, i) + (ch === ch.toLowerCase() ? ch.toUpperCase() : ch.toLowerCase()) + address.slice(i + 1);
  refused(() => core.normalizeAddress(broken), 'malformed');
  assert.equal(core.isChecksumAddress(address.toLowerCase()), false);
  assert.equal(core.normalizeAddress(address.toLowerCase()), address);
});

test('amounts that are not canonical decimal strings are malformed', () => {
  const base = linkedCreate();
  for (const amount of ['-1', '1e18', '0x10', '01', ' 1', '1.0', '', 100, null, String(2n ** 256n)]) {
    assert.throws(() => core.updateFromJson({ ...base, amount }), { code: 'malformed', field: 'amount' }, String(amount));
  }
});

test('an update object with a negative, fractional or non-BigInt amount is amount_out_of_range', () => {
  const update = core.updateFromJson(linkedCreate());
  const state = afterTokenDeposit();
  for (const amount of [-1n, 2n ** 256n, 1, '1', 1.5]) {
    refused(() => core.applyUpdate(state, { ...update, amount }, linkedContext()), 'amount_out_of_range');
  }
  refused(() => core.applyUpdate(state, { ...update, nonce: 5 }, linkedContext()), 'malformed');
  refused(() => core.applyUpdate(state, { ...update, paymentId: update.paymentId.toUpperCase().replace('0X', '0x') }, linkedContext()), 'malformed');
  refused(() => core.applyUpdate(state, { ...update, extra: 1 }, linkedContext()), 'malformed');
  const { metaHash, ...missing } = update;
  refused(() => core.applyUpdate(state, missing, linkedContext()), 'malformed');
  refused(() => core.applyUpdate(state, { ...update, type: 'transfer' }, linkedContext()), 'malformed');
});

test('a create for an unknown definition is unknown_definition, and so is a context kind that does not exist', () => {
  const update = core.updateFromJson(linkedCreate());
  refused(() => core.applyUpdate(afterTokenDeposit(), { ...update, transferDefinition: account('stranger').address }, linkedContext()), 'unknown_definition');
  const context = step('user locks a Linked transfer').context;
  const bad = { ...context, definitions: { ...context.definitions, [update.transferDefinition]: 'escrow' } };
  assert.throws(() => core.updateContextFromJson(bad), { code: 'malformed' });
  refused(() => core.definitions.resolve('escrow', [1n, 0n], '0x', '0x', { chainId: 1n, definition: update.transferDefinition, now: 0n }), 'unknown_definition');
});

test('updates before setup are no_channel; a bad setup is invalid_setup, bad_timeout, unauthorized or a nonce error', () => {
  const setup = core.updateFromJson(history.steps[0].update);
  const context = core.updateContextFromJson(history.steps[0].context);
  refused(() => core.applyUpdate(null, core.updateFromJson(history.steps[1].update), context), 'no_channel');
  refused(() => core.applyUpdate(null, { ...setup, user: setup.node }, context), 'invalid_setup');
  refused(() => core.applyUpdate(null, { ...setup, node: core.ZERO_ADDRESS }, context), 'invalid_setup');
  refused(() => core.applyUpdate(null, { ...setup, chainId: 0n }, context), 'invalid_setup');
  refused(() => core.applyUpdate(null, { ...setup, channelAddress: core.ZERO_ADDRESS }, context), 'invalid_setup');
  refused(() => core.applyUpdate(null, { ...setup, initiator: account('stranger').address }, context), 'unauthorized');
  refused(() => core.applyUpdate(null, { ...setup, timeout: 0n }, context), 'bad_timeout');
  refused(() => core.applyUpdate(null, { ...setup, timeout: 2n ** 32n }, context), 'bad_timeout');
  refused(() => core.applyUpdate(null, { ...setup, nonce: 0n }, context), 'stale_nonce');
  refused(() => core.applyUpdate(null, { ...setup, nonce: 2n }, context), 'nonce_gap');
  assert.equal(core.applyUpdate(null, setup, context).nonce, 1n);
});

test('a forged state (balances not covered by deposits, wrong root, bad transfer id) is refused when parsed', () => {
  const json = step('user locks a Linked transfer').state;
  const inflated = { ...json, balances: [[json.balances[0][0], String(BigInt(json.balances[0][1]) + 1n)], json.balances[1]] };
  refused(() => core.channelStateFromJson(inflated), 'invariant_violated');
  refused(() => core.channelStateFromJson({ ...json, merkleRoot: core.ZERO_BYTES32 }), 'malformed');
  const transfer = { ...json.transfers[0], transferId: core.keccak256('0x00') };
  refused(() => core.channelStateFromJson({ ...json, transfers: [transfer] }), 'malformed');
  refused(() => core.channelStateFromJson({ ...json, nonce: '0' }), 'invariant_violated');
  refused(() => core.channelStateFromJson({ ...json, defundNonces: ['0', '1'] }), 'invariant_violated');
  refused(() => core.channelStateFromJson({ ...json, assetIds: [json.assetIds[0], json.assetIds[0]] }), 'invariant_violated');
  refused(() => core.channelStateFromJson({ ...json, balances: [json.balances[0]] }), 'invariant_violated');
  refused(() => core.channelStateFromJson({ ...json, unknown: 1 }), 'malformed');
  const { nonce, ...missing } = json;
  assert.throws(() => core.channelStateFromJson(missing), { code: 'malformed', field: 'nonce' });
  assert.throws(() => core.channelStateFromJson({ ...json, balances: [['1', 'x'], json.balances[1]] }), { code: 'malformed', field: 'balances[0][1]' });
});

test('signatures that OpenZeppelin rejects are bad_signature: length, v, zero r or s, high s', () => {
  const c = load('channel_states').cases[0];
  const state = core.channelStateFromJson(c.state);
  const good = c.signatures.user;
  const r = good.slice(2, 66);
  const s = BigInt('0x' + good.slice(66, 130));
  const v = parseInt(good.slice(130), 16);
  const highS = (core.SECP256K1_N - s).toString(16).padStart(64, '0');
  const flippedV = (v === 27 ? 28 : 27).toString(16);
  for (const signature of [
    good.slice(0, -2),
    good + '00',
    good.slice(0, -2) + '1b'.replace('1b', v === 27 ? '00' : '01'),
    good.slice(0, -2) + '1d',
    '0x' + '00'.repeat(32) + good.slice(66),
    '0x' + r + '00'.repeat(32) + good.slice(130),
    '0x' + r + highS + flippedV,
    'not hex',
  ]) {
    refused(() => core.recoverStateSigner(state, signature), 'bad_signature');
  }
  // The same signature with the other v recovers someone else, never the user.
  assert.notEqual(core.recoverStateSigner(state, good.slice(0, -2) + flippedV), state.user);
});

test('a private key that is not a secp256k1 scalar is malformed', () => {
  const c = load('channel_states').cases[0];
  const state = core.channelStateFromJson(c.state);
  for (const key of ['0x' + '00'.repeat(32), '0x' + 'ff'.repeat(32), '0x1234', 'nope']) {
    refused(() => core.signState(state, key), 'malformed');
  }
});

test('canonical encodings only: a Withdraw state or Signed resolver with trailing or dirty bytes is refused', () => {
  const withdraw = load('transfers').cases.find((c) => c.definition === 'withdraw');
  const signed = load('transfers').cases.find((c) => c.definition === 'signed');
  const { definitions: defs } = core;
  refused(() => defs.decodeWithdrawState(withdraw.transfer.encodedState + '00'.repeat(32)), 'bad_transfer_state');
  const dirty = '0x' + '01' + withdraw.transfer.encodedState.slice(4);
  refused(() => defs.decodeWithdrawState(dirty), 'bad_transfer_state');
  const claim = signed.resolvers[0].encodedResolver;
  refused(() => defs.decodeSignedResolver(claim + '00'.repeat(32)), 'bad_resolver');
  refused(() => defs.decodeSignedResolver(claim.slice(0, -64)), 'bad_resolver');
  refused(() => defs.decodeSignedState('0x01' + signed.transfer.encodedState.slice(4)), 'bad_transfer_state');
  refused(() => defs.decodeWithdrawResolver('0x'), 'bad_resolver');
});

test('a definition create with balance [0, 0] or [x, y > 0] is bad_transfer_state', () => {
  const linked = load('transfers').cases.find((c) => c.definition === 'linked');
  refused(() => core.definitions.create('linked', [0n, 0n], linked.transfer.encodedState, { chainId: 1n }), 'bad_transfer_state');
  refused(() => core.definitions.create('linked', [1n, 1n], linked.transfer.encodedState, { chainId: 1n }), 'bad_transfer_state');
  refused(() => core.definitions.create('hashlock', [1n, 0n], core.definitions.encodeHashLockState({ lockHash: core.keccak256('0x01'), expiry: 0n }), { chainId: 1n }), 'bad_transfer_state');
  refused(() => core.definitions.create('signed', [1n, 0n], core.definitions.encodeSignedState({ signer: core.ZERO_ADDRESS, paymentId: core.ZERO_BYTES32 }), { chainId: 1n }), 'bad_transfer_state');
});

test('a rejected update leaves the caller state as it was (values are frozen)', () => {
  const state = afterTokenDeposit();
  const before = JSON.stringify(core.channelStateToJson(state));
  assert.ok(Object.isFrozen(state) && Object.isFrozen(state.balances) && Object.isFrozen(state.balances[0]));
  refused(() => core.applyUpdate(state, { ...core.updateFromJson(linkedCreate()), amount: 10n ** 30n }, linkedContext()), 'insufficient_balance');
  assert.equal(JSON.stringify(core.channelStateToJson(state)), before);
});

test('a context of plain objects works like one of Maps; a context without a BigInt `now` is malformed', () => {
  const s = step('user locks a Linked transfer');
  const update = core.updateFromJson(s.update);
  const plain = {
    now: BigInt(s.context.now),
    definitions: s.context.definitions,
    chainDeposits: Object.fromEntries(Object.entries(s.context.chainDeposits).map(([k, v]) => [k, v.map(BigInt)])),
  };
  assert.equal(core.channelStateHash(core.applyUpdate(afterTokenDeposit(), update, plain)), s.stateHash);
  refused(() => core.applyUpdate(afterTokenDeposit(), update, { ...plain, now: Number(plain.now) }), 'malformed');
});

test('a swap with a non-canonical amount or a bad asset address is malformed; a non-BigInt amount is amount_out_of_range', () => {
  const s = step("user swaps ETH for the node's tokens");
  const base = s.update;
  for (const [change, field] of [
    [{ giveAmount: '01' }, 'giveAmount'],
    [{ takeAmount: '-1' }, 'takeAmount'],
    [{ giveAssetId: '0x1234' }, 'giveAssetId'],
    [{ takeAssetId: 7 }, 'takeAssetId'],
  ]) {
    assert.throws(() => core.updateFromJson({ ...base, ...change }), { code: 'malformed', field }, JSON.stringify(change));
  }
  const { takeAmount, ...missing } = base;
  assert.throws(() => core.updateFromJson(missing), { code: 'malformed', field: 'takeAmount' });
  const previous = core.channelStateFromJson(history.steps[history.steps.indexOf(s) - 1].state);
  const update = core.updateFromJson(base);
  const context = core.updateContextFromJson(s.context);
  for (const amount of [-1n, 2n ** 256n, 1, '1']) {
    refused(() => core.applyUpdate(previous, { ...update, giveAmount: amount }, context), 'amount_out_of_range');
    refused(() => core.applyUpdate(previous, { ...update, takeAmount: amount }, context), 'amount_out_of_range');
  }
  refused(() => core.applyUpdate(previous, { ...update, takeAssetId: update.takeAssetId.toLowerCase() }, context), 'malformed');
  refused(() => core.applyUpdate(previous, { ...update, assetId: update.takeAssetId }, context), 'malformed');
  assert.equal(core.channelStateHash(core.applyUpdate(previous, update, context)), s.stateHash);
});
