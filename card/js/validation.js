// The responder's side of an update: decide whether the state the initiator signed is safe to sign.
// The card never trusts a state it is sent: it re-derives the next state from its own latest state and
// the update (`applyUpdate`, every rule and invariant), checks that the initiator signed exactly that
// state's hash, and only then countersigns. Mirrors connext/protocol/validation.py.

import { BadSignatureError } from './errors.js';
import { addressOf, recoverStateSigner, signState } from './signing.js';
import { applyUpdate } from './updates.js';
import { partyOf } from './types.js';

/** The next state to countersign, or a ProtocolError (then nothing may be signed or stored). */
export function validateUpdate(previous, update, initiatorSignature, context) {
  const next = applyUpdate(previous, update, context);
  const signer = recoverStateSigner(next, initiatorSignature);
  if (signer !== update.initiator) {
    throw new BadSignatureError(`the initiator signature is by ${signer}, not ${update.initiator}`, { field: 'initiatorSignature' });
  }
  return next;
}

/** `validateUpdate`, then the responder's own signature on the next state: `{ state, signature }`. */
export function countersign(previous, update, initiatorSignature, privateKey, context) {
  const address = addressOf(privateKey);
  const state = validateUpdate(previous, update, initiatorSignature, context);
  if (partyOf(state, address) === null || address === update.initiator) {
    throw new BadSignatureError("the responder key is not the channel's other party", { field: 'privateKey' });
  }
  return { state, signature: signState(state, privateKey) };
}

/** The initiator's side: apply its own update and sign the result: `{ state, signature }`. */
export function initiateUpdate(previous, update, privateKey, context) {
  if (addressOf(privateKey) !== update.initiator) {
    throw new BadSignatureError("the key is not the update's initiator", { field: 'privateKey' });
  }
  const state = applyUpdate(previous, update, context);
  return { state, signature: signState(state, privateKey) };
}
