// The card's client of the node (browser and Node 20): `CardClient` over the node's REST API and
// websocket, every state re-derived and checked with the protocol core before it is signed.
// fetch and WebSocket are injectable; nothing here touches the DOM.

export { CardClient, ETH, FINAL_STATUSES, LINK_LIFETIME_SECONDS, PAYMENT_TRANSFER_TIMEOUT, WITHDRAW_TRANSFER_TIMEOUT, checkAddress, checkAmount } from './client.js';
export * from './errors.js';
export { Emitter } from './events.js';
export { NodeApi, PACE_CODES, SOCKET_PATHS, fetchLinkStatus, paceWaitMs } from './node_api.js';
export { ChainReader } from './chain.js';
export { linkUrl, parseLink } from './links.js';
export { findRate, leastAccepted, parseSlippage, quoteTake, rateOf, takeMovedOffer } from './swap.js';
