// The card's connection to the node: a protocol client for the unlocked account, made when the card
// unlocks and dropped when it locks (the key is then zeroed). A node that does not answer is tried
// again with a growing pause; the card says so and stays usable.
import { CardClient } from '../js/client/index.js';
import { attachClient, onAccountChange, showError } from './app.js';

const FIRST_RETRY_MS = 1000;
const LAST_RETRY_MS = 30_000;

let generation = 0;
let client = null;
let key = null; // the client's copy of the key, zeroed when the card locks

function pause(ms) {
  return new Promise((resolve) => {
    setTimeout(resolve, ms);
  });
}

async function connect(account, turn) {
  let wait = FIRST_RETRY_MS;
  while (turn === generation) {
    try {
      const made = await CardClient.connect({
        nodeUrl: window.location.origin,
        privateKey: account.privateKey,
        linkOrigin: window.location.origin,
      });
      if (turn !== generation) {
        made.close(); // locked (or another card unlocked) while it connected
        return;
      }
      client = made;
      attachClient(made);
      return;
    } catch (error) {
      if (turn !== generation) return;
      showError(`The card could not reach the node (${error.message || error}); trying again in ${Math.round(wait / 1000)} s.`);
      await pause(wait);
      wait = Math.min(wait * 2, LAST_RETRY_MS);
    }
  }
}

export function startSession() {
  onAccountChange((account) => {
    generation += 1;
    attachClient(null);
    client?.close();
    client = null;
    key?.fill(0);
    key = account ? account.privateKey.slice() : null;
    if (account) connect({ address: account.address, privateKey: key }, generation);
  });
}
