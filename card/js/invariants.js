// Channel invariants, checked on every state a rule produces and on every state parsed from outside;
// a mirror of connext/protocol/invariants.py (its docstring lists them). Any breach is
// `invariant_violated`: a bug in a rule, or a forged state.

import { MAX_UINT256, isUint256 } from './bytes.js';
import { InvariantViolationError } from './errors.js';
import { transferIdOf } from './encoding.js';
import { DefinitionKind, assetIndex, findTransfer, lockedOf, lockedOfTransfer, partyOf } from './types.js';

function require(condition, message) {
  if (!condition) throw new InvariantViolationError(message);
}

/** Deep equality of core values (arrays, plain objects, BigInts, strings). */
export function equalValues(a, b) {
  if (a === b) return true;
  if (Array.isArray(a)) {
    return Array.isArray(b) && a.length === b.length && a.every((item, i) => equalValues(item, b[i]));
  }
  if (a && b && typeof a === 'object' && typeof b === 'object' && !Array.isArray(b)) {
    const keys = Object.keys(a);
    return keys.length === Object.keys(b).length && keys.every((key) => Object.hasOwn(b, key) && equalValues(a[key], b[key]));
  }
  return false;
}

/** Throw `invariant_violated` unless `state` is internally consistent. */
export function checkState(state) {
  const count = state.assetIds.length;
  require(
    state.balances.length === count && state.processedDeposits.length === count && state.defundNonces.length === count,
    'every per-asset list has one entry per asset',
  );
  require(new Set(state.assetIds).size === count, 'each asset appears once');
  require(state.node !== state.user, 'node and user differ');
  require(typeof state.nonce === 'bigint' && state.nonce >= 1n && state.nonce <= MAX_UINT256, 'the nonce is at least 1');
  require(isUint256(state.chainId) && isUint256(state.timeout), 'chain id and timeout are uint256');
  const pairs = [...state.balances, ...state.processedDeposits];
  require(pairs.every((pair) => pair.length === 2), 'amounts come in [node, user] pairs');
  const amounts = pairs.flat();
  require(amounts.every((a) => typeof a === 'bigint'), 'amounts are integers');
  require(amounts.every(isUint256), 'amounts are uint256');
  require(state.defundNonces.every((n) => isUint256(n) && n >= 1n), 'defund nonces start at 1');
  const locked = new Map(state.assetIds.map((asset) => [asset, 0n]));
  let previousCreateNonce = 0n;
  for (const transfer of state.transfers) {
    const { balance } = transfer;
    const parties = new Set([transfer.initiator, transfer.responder]);
    require(
      transfer.channelAddress === state.channelAddress &&
        parties.size === 2 && parties.has(state.node) && parties.has(state.user) &&
        locked.has(transfer.assetId),
      'a transfer belongs to its channel, goes between node and user, in an asset of the channel',
    );
    require(
      balance.length === 2 && typeof balance[0] === 'bigint' && balance[0] > 0n && balance[0] <= MAX_UINT256 && balance[1] === 0n,
      'an active transfer holds [amount > 0, 0]',
    );
    require(
      typeof transfer.createNonce === 'bigint' && previousCreateNonce < transfer.createNonce && transfer.createNonce <= state.nonce,
      "transfers are created at increasing nonces up to the state's (unique ids)",
    );
    require(isUint256(transfer.transferTimeout), 'a transfer timeout is uint256');
    previousCreateNonce = transfer.createNonce;
    locked.set(transfer.assetId, locked.get(transfer.assetId) + balance[0]);
  }
  state.assetIds.forEach((assetId, index) => {
    const [nodeBalance, userBalance] = state.balances[index];
    const [processedNode, processedUser] = state.processedDeposits[index];
    require(
      nodeBalance + userBalance + locked.get(assetId) <= processedNode + processedUser,
      'balances and locked amounts are covered by processed deposits (withdrawn ≥ 0)',
    );
  });
}

function movedAsset(previous, update) {
  if (update.type === 'deposit' || update.type === 'create') return update.assetId;
  if (update.type === 'resolve') {
    const transfer = findTransfer(previous, update.transferId);
    return transfer ? transfer.assetId : null;
  }
  return null;
}

/** Throw `invariant_violated` unless `next` follows from `previous` by `update` as the rules allow. */
export function checkTransition(previous, next, update, { definitionKind = null } = {}) {
  checkState(next);
  if (previous === null) {
    require(update.type === 'setup', 'only setup starts a channel');
    require(next.nonce === 1n && !next.assetIds.length && !next.transfers.length, 'the setup state is nonce 1 and empty');
    return;
  }
  require(next.nonce === previous.nonce + 1n, 'the nonce rises by exactly one');
  require(
    next.channelAddress === previous.channelAddress && next.chainId === previous.chainId &&
      next.node === previous.node && next.user === previous.user && next.timeout === previous.timeout,
    'channel, chain, parties and timeout never change',
  );
  const oldCount = previous.assetIds.length;
  require(equalValues(next.assetIds.slice(0, oldCount), previous.assetIds), 'assets are only appended');
  if (update.type === 'resume') {
    checkResume(previous, next, update);
    return;
  }
  require(equalValues(next.defundNonces.slice(0, oldCount), previous.defundNonces), 'only a resume changes defund nonces');
  require(next.defundNonces.slice(oldCount).every((n) => n === 1n), 'a new asset starts at defund nonce 1');
  require(next.assetIds.length - oldCount <= (update.type === 'deposit' ? 1 : 0), 'one new asset');
  if (update.type === 'swap') {
    checkSwap(previous, next, update);
    return;
  }

  const moved = movedAsset(previous, update);
  previous.assetIds.forEach((assetId, index) => {
    if (assetId !== moved) {
      require(
        equalValues(next.balances[index], previous.balances[index]) &&
          equalValues(next.processedDeposits[index], previous.processedDeposits[index]) &&
          lockedOf(next, assetId) === lockedOf(previous, assetId),
        "only the update's own asset moves",
      );
    }
  });
  if (moved === null) return;
  const index = next.assetIds.indexOf(moved);
  const oldIndex = assetIndex(previous, moved);
  const oldBalances = oldIndex !== null ? previous.balances[oldIndex] : [0n, 0n];
  const oldProcessed = oldIndex !== null ? previous.processedDeposits[oldIndex] : [0n, 0n];
  const balanceDelta = [next.balances[index][0] - oldBalances[0], next.balances[index][1] - oldBalances[1]];
  const processedDelta = [
    next.processedDeposits[index][0] - oldProcessed[0],
    next.processedDeposits[index][1] - oldProcessed[1],
  ];
  if (update.type === 'deposit') {
    require(equalValues(next.transfers, previous.transfers), 'a deposit leaves transfers alone');
    require(processedDelta[0] >= 0n && processedDelta[1] >= 0n, 'processed deposits never fall');
    require(equalValues(balanceDelta, processedDelta), 'a deposit credits exactly what it processes');
    return;
  }
  require(processedDelta[0] === 0n && processedDelta[1] === 0n, 'only a deposit changes processed deposits');
  if (update.type === 'create') {
    require(
      equalValues(next.transfers.slice(0, -1), previous.transfers) && next.transfers.length === previous.transfers.length + 1,
      'a create adds one transfer',
    );
    const created = next.transfers[next.transfers.length - 1];
    require(created.createNonce === next.nonce, 'a transfer id is bound to its create nonce');
    const payer = partyOf(previous, update.initiator);
    const expected = [0n, 0n];
    if (payer !== null) expected[payer] = -update.amount;
    require(
      equalValues(balanceDelta, expected) && equalValues(created.balance, [update.amount, 0n]),
      'a create moves exactly its amount from the initiator into the transfer',
    );
    return;
  }
  // resolve
  const resolved = findTransfer(previous, update.transferId);
  require(resolved !== null && findTransfer(next, update.transferId) === null, 'a resolve removes its transfer');
  require(
    equalValues(next.transfers, previous.transfers.filter((t) => t !== resolved)),
    'a resolve removes only its transfer',
  );
  const paidOut = balanceDelta[0] + balanceDelta[1];
  require(balanceDelta[0] >= 0n && balanceDelta[1] >= 0n && paidOut <= lockedOfTransfer(resolved), 'a resolve pays out at most what is locked');
  require(
    paidOut === lockedOfTransfer(resolved) || definitionKind === DefinitionKind.WITHDRAW,
    'only a withdraw takes funds out of the channel',
  );
}

function checkSwap(previous, next, update) {
  require(
    equalValues(next.transfers, previous.transfers) && equalValues(next.processedDeposits, previous.processedDeposits),
    'a swap leaves transfers and processed deposits alone',
  );
  const initiator = partyOf(previous, update.initiator);
  require(initiator !== null, 'a swap is between the node and the user');
  const moves = new Map([[update.giveAssetId, [initiator, update.giveAmount]], [update.takeAssetId, [1 - initiator, update.takeAmount]]]);
  require(moves.size === 2, 'a swap exchanges two different assets');
  previous.assetIds.forEach((assetId, index) => {
    const old = previous.balances[index];
    const now = next.balances[index];
    require(old[0] + old[1] === now[0] + now[1], 'a swap conserves each asset (node + user unchanged)');
    const [payer, amount] = moves.get(assetId) ?? [0, 0n];
    const expected = [0n, 0n];
    expected[payer] -= amount;
    expected[1 - payer] += amount;
    require(
      equalValues([now[0] - old[0], now[1] - old[1]], expected),
      'a swap moves exactly its amounts between the parties, and no other asset',
    );
  });
  require(previous.assetIds.includes(update.giveAssetId) && previous.assetIds.includes(update.takeAssetId), 'a swap is in assets of the channel');
}

function checkResume(previous, next, update) {
  let changed = false;
  next.assetIds.forEach((assetId, index) => {
    const oldIndex = assetIndex(previous, assetId);
    const nonce = next.defundNonces[index];
    let raised;
    let oldProcessed;
    if (oldIndex === null) {
      raised = true;
      require(nonce > 1n, 'a resume appends only assets the chain defunded (defund nonce above 1)');
      oldProcessed = [0n, 0n];
    } else {
      const oldNonce = previous.defundNonces[oldIndex];
      raised = nonce !== oldNonce;
      require(!raised || nonce === oldNonce + 1n, 'a resume raises a defund nonce by exactly one');
      oldProcessed = previous.processedDeposits[oldIndex];
    }
    const processed = next.processedDeposits[index];
    if (raised) {
      changed = true;
      require(equalValues(next.balances[index], [0n, 0n]), "a defunded asset's balances were paid out: [0, 0]");
      require(processed[0] >= oldProcessed[0] && processed[1] >= oldProcessed[1], 'processed deposits never fall');
    } else {
      require(
        equalValues(next.balances[index], previous.balances[oldIndex]) && equalValues(processed, oldProcessed),
        'an asset not defunded keeps its balances and processed deposits',
      );
    }
  });
  const dropped = new Set(update.droppedTransferIds);
  require(
    [...dropped].every((id) => findTransfer(previous, id) !== null) &&
      equalValues(next.transfers, previous.transfers.filter((t) => !dropped.has(transferIdOf(t)))),
    'a resume drops exactly the transfers it names',
  );
  require(changed || dropped.size > 0, 'a resume changes something');
}
