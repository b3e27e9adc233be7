// The card injected into a page of its own origin: its EIP-1193 provider, asking the user through the
// card's dialog, on the node's chain (GET /api/config), announced per EIP-6963. Burning or replacing
// the card in another tab (the vault's storage changes) locks the provider here too.
import { dialogWallet } from './approval.js';
import { CardProvider, announceProvider, nodeNetwork } from './provider.js';
import { VAULT_KEY } from './vault.js';

export function injectCard(window, { configUrl }) {
  const provider = new CardProvider({
    network: nodeNetwork(new URL(configUrl, window.location.href).href, window.fetch.bind(window)),
    wallet: dialogWallet(window.document, window.localStorage),
  });
  window.addEventListener('storage', (event) => {
    if (event.key === null || event.key === VAULT_KEY) provider.lock();
  });
  provider.chain().catch(() => undefined); // the first 'connect' (or 'disconnect') event, early
  announceProvider(window, provider);
  return provider;
}
