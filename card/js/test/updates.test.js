import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as core from '../index.js';
import { keyOf, load } from './vectors.js';

const history = load('updates');

function replay() {
  const states = [];
  let state = null;
  for (const step of history.steps) {
    state = core.applyUpdate(state, core.updateFromJson(step.update), core.updateContextFromJson(step.context));
    states.push(state);
  }
  return states;
}

test('the update history replays to the same states, hashes and signatures', () => {
  let previous = null;
  for (const step of history.steps) {
    const update = core.updateFromJson(step.update);
    const context = core.updateContextFromJson(step.context);
    const state = core.applyUpdate(previous, update, context);
    assert.deepEqual(core.channelStateToJson(state), step.state, step.name);
    assert.equal(core.channelStateHash(state), step.stateHash, step.name);
    assert.ok(core.equalValues(core.channelStateFromJson(step.state), state), step.name);
    const responder = update.initiator === state.node ? state.user : state.node;
    assert.equal(core.signState(state, keyOf(update.initiator)), step.initiatorSignature, step.name);
    assert.equal(core.signState(state, keyOf(responder)), step.responderSignature, step.name);
    assert.deepEqual(core.updateToJson(update), step.update, step.name);
    assert.deepEqual(core.updateContextToJson(context), step.context, step.name);
    previous = state;
  }
});

test("the responder countersigns exactly the vector's state and signature at every step", () => {
  let previous = null;
  for (const step of history.steps) {
    const update = core.updateFromJson(step.update);
    const context = core.updateContextFromJson(step.context);
    const responder = update.initiator === step.state.node ? step.state.user : step.state.node;
    const { state, signature } = core.countersign(previous, update, step.initiatorSignature, keyOf(responder), context);
    assert.equal(core.channelStateHash(state), step.stateHash, step.name);
    assert.equal(signature, step.responderSignature, step.name);
    const initiated = core.initiateUpdate(previous, update, keyOf(update.initiator), context);
    assert.equal(initiated.signature, step.initiatorSignature, step.name);
    previous = state;
  }
});

test("a state signed by anyone but the initiator is refused (bad_signature) and nothing is signed", () => {
  let previous = null;
  for (const step of history.steps) {
    const update = core.updateFromJson(step.update);
    const context = core.updateContextFromJson(step.context);
    const responder = update.initiator === step.state.node ? step.state.user : step.state.node;
    assert.throws(() => core.validateUpdate(previous, update, step.responderSignature, context), { code: 'bad_signature' }, step.name);
    assert.throws(
      () => core.countersign(previous, update, step.initiatorSignature, keyOf(update.initiator), context),
      { code: 'bad_signature' },
      step.name,
    );
    assert.throws(() => core.initiateUpdate(previous, update, keyOf(responder), context), { code: 'bad_signature' });
    previous = core.validateUpdate(previous, update, step.initiatorSignature, context);
  }
});

test('the previous step signature does not validate the next state', () => {
  const states = replay();
  const step = history.steps[3];
  assert.throws(
    () => core.validateUpdate(states[2], core.updateFromJson(step.update), history.steps[2].initiatorSignature, core.updateContextFromJson(step.context)),
    { code: 'bad_signature' },
  );
});

const states = replay();
for (const rejection of history.rejections) {
  test(`rejection "${rejection.name}" fails with ${rejection.error}`, () => {
    const previous = states[rejection.afterStep];
    const update = core.updateFromJson(rejection.update);
    const context = core.updateContextFromJson(rejection.context);
    assert.throws(() => core.applyUpdate(previous, update, context), (error) => {
      assert.ok(error instanceof core.ProtocolError, String(error));
      assert.equal(error.code, rejection.error);
      return true;
    });
    assert.deepEqual(core.channelStateToJson(previous), history.steps[rejection.afterStep].state, 'the state is untouched');
  });
}

test('the rejections cover every update code a history can reach', () => {
  const codes = new Set(history.rejections.map((r) => r.error));
  for (const code of [
    'stale_nonce', 'nonce_gap', 'wrong_channel', 'channel_exists', 'unauthorized', 'amount_out_of_range',
    'insufficient_balance', 'unknown_asset', 'unknown_definition', 'bad_transfer_state', 'unknown_transfer',
    'bad_resolver', 'expired', 'bad_deposit', 'no_new_deposit', 'deposit_exceeds_chain', 'dispute_not_over',
    'dispute_mismatch', 'bad_timeout', 'same_asset',
  ]) {
    assert.ok(codes.has(code), code);
  }
});
