import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as core from '../index.js';
import { load } from './vectors.js';

const history = load('updates');
const states = [];
{
  let state = null;
  for (const step of history.steps) {
    state = core.applyUpdate(state, core.updateFromJson(step.update), core.updateContextFromJson(step.context));
    states.push(state);
  }
}
const at = (prefix) => history.steps.findIndex((s) => s.name.startsWith(prefix));
const proposal = (prefix) => {
  const i = at(prefix);
  const step = history.steps[i];
  return { previous: states[i - 1], update: core.updateFromJson(step.update), signature: step.initiatorSignature, context: core.updateContextFromJson(step.context), step };
};
const refusedWith = (fn, code) => assert.throws(fn, (error) => {
  assert.ok(error instanceof core.ValidationError, String(error));
  assert.equal(error.code, code, String(error));
  return true;
});

test("the default window is the watcher's reaction time: 5 + 3 × 12 + 300 = 341 s", () => {
  assert.equal(core.DEFAULT_MIN_WINDOW, 341n);
  assert.equal(core.minWindow({ pollSeconds: 1.5, confirmations: 1, blockSeconds: 2, marginSeconds: 0 }), 4n);
});

test("the card countersigns the node's deposit credit, its resolves of the user's transfers, its Signed payment and its resume", () => {
  for (const prefix of ['node collateralizes ETH', 'node deposits a token', 'node resolves the Linked', 'node resolves the Withdraw', 'node locks a Signed', 'node resumes']) {
    const { previous, update, signature, context, step } = proposal(prefix);
    const next = core.checkNodeProposal(previous, update, signature, context);
    assert.equal(core.channelStateHash(next), step.stateHash, prefix);
  }
});

test("the node's HashLock expiring within the watcher's window is refused (expiring), and accepted with a shorter window", () => {
  const { previous, update, signature, context, step } = proposal('node locks a HashLock');
  refusedWith(() => core.checkNodeProposal(previous, update, signature, context, { meta: { memo: 'lunch' } }), 'expiring');
  const next = core.checkNodeProposal(previous, update, signature, context, { meta: { memo: 'lunch' }, minWindow: 300n });
  assert.equal(core.channelStateHash(next), step.stateHash);
});

test("an incoming payment whose meta does not hash to its metaHash, or names another payment, is bad_meta", () => {
  const { previous, update, signature, context } = proposal('node locks a HashLock');
  refusedWith(() => core.checkNodeProposal(previous, update, signature, context, { meta: { memo: 'dinner' }, minWindow: 300n }), 'bad_meta');
  const signed = proposal('node locks a Signed');
  refusedWith(() => core.checkNodeProposal(signed.previous, signed.update, signed.signature, signed.context, { meta: { paymentId: core.ZERO_BYTES32 } }), 'bad_meta');
  const deposit = proposal('node collateralizes ETH');
  refusedWith(() => core.checkNodeProposal(deposit.previous, deposit.update, deposit.signature, deposit.context, { meta: { memo: 'x' } }), 'bad_meta');
});

test("the user's own updates, a deposit without the card's chain reading and a forged signature are refused", () => {
  const mine = proposal('user locks a Linked');
  refusedWith(() => core.checkNodeProposal(mine.previous, mine.update, mine.signature, mine.context), 'unauthorized');
  const deposit = proposal('node collateralizes ETH');
  const blind = core.makeUpdateContext({ now: deposit.context.now, definitions: deposit.context.definitions });
  refusedWith(() => core.checkNodeProposal(deposit.previous, deposit.update, deposit.signature, blind), 'no_chain_reading');
  refusedWith(() => core.checkNodeProposal(deposit.previous, deposit.update, deposit.step.responderSignature, deposit.context), 'bad_signature');
  const resume = proposal('node resumes');
  const noDispute = core.makeUpdateContext({ ...resume.context, dispute: null });
  refusedWith(() => core.checkNodeProposal(resume.previous, resume.update, resume.signature, noDispute), 'no_chain_reading');
});

test("a swap the node proposes is refused (unsupported_update) though the core accepts it: the user initiates swaps", () => {
  const { previous, update, signature, context, step } = proposal('node swaps ETH for');
  assert.equal(update.type, 'swap');
  assert.equal(core.channelStateHash(core.validateUpdate(previous, update, signature, context)), step.stateHash);
  refusedWith(() => core.checkNodeProposal(previous, update, signature, context), 'unsupported_update');
  const users = proposal("user swaps ETH for the node's");
  refusedWith(() => core.checkNodeProposal(users.previous, users.update, users.signature, users.context), 'unauthorized');
});

test('a transfer window shorter than the watcher needs is window_too_short', () => {
  refusedWith(() => core.checkWindow('transferTimeout', 340n), 'window_too_short');
  core.checkWindow('transferTimeout', 341n);
});

test("a state lowering the user's balance or processed deposits, or dropping an asset, is refused", () => {
  const before = states[at('node deposits a token')];
  const lower = core.replaceState(before, { balances: [[before.balances[0][0], before.balances[0][1] - 1n], before.balances[1]] });
  refusedWith(() => core.checkUserNotDebited(before, lower), 'user_debited');
  const processed = core.replaceState(before, { processedDeposits: [[before.processedDeposits[0][0], 0n], before.processedDeposits[1]] });
  refusedWith(() => core.checkUserNotDebited(before, processed), 'user_debited');
  const dropped = core.replaceState(before, { assetIds: [before.assetIds[0]], balances: [before.balances[0]], processedDeposits: [before.processedDeposits[0]], defundNonces: [1n] });
  refusedWith(() => core.checkUserNotDebited(before, dropped), 'asset_removed');
});
