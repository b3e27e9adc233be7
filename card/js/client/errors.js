// The client's typed errors, mirroring connext/errors.py: every refusal carries a machine-readable
// `code` (the node's own code for its refusals), so a screen can switch on it and say why.
//
//   ClientError                 base: `code`, `message`
//   ├─ NodeError                the node refused (4xx): `status`, `details` (the error's other fields)
//   │  ├─ AuthenticationError   401 (`invalid_token`, `token_expired`, `bad_signature`, …)
//   │  └─ LimitError            the node's limits on collateral, withdrawals and swaps (nothing changed)
//   ├─ NodeUnavailableError     5xx or no answer (`node_unavailable`, `chain_unavailable`): retry
//   ├─ InvalidArgumentError     the caller's input, refused before anything is signed
//   ├─ ChainError               the chain refused or failed (`withdrawal_failed`, `chain_rpc`, …)
//   ├─ SlippageError            `slippage_exceeded`: the node's rate moved past the swap's maxSlippage
//   └─ ClientTimeoutError       waited `timeout` for something that did not happen
// plus the core's ProtocolError and the policy's ValidationError (re-exported): a state the card refuses
// to sign. Nothing is signed when one of these is thrown before a request went out.

export { ProtocolError } from '../errors.js';
export { ValidationError } from '../policy.js';

export class ClientError extends Error {
  constructor(code, message) {
    super(message);
    this.name = new.target.name;
    this.code = code;
  }

  toString() {
    return `${this.code}: ${this.message}`;
  }
}

export class NodeError extends ClientError {
  constructor(code, message, status, details = {}) {
    super(code, message);
    this.status = status;
    this.details = details;
  }
}

export class AuthenticationError extends NodeError {}
export class LimitError extends NodeError {}
export class NodeUnavailableError extends ClientError {}
export class InvalidArgumentError extends ClientError {}
export class ChainError extends ClientError {}
/** The node's rate moved further below the quote a swap started from than its `maxSlippage` allows;
 * nothing was signed. `quoted` and `offered`: what the user would have received then and now (BigInt),
 * `least` the least it accepted. */
export class SlippageError extends ClientError {
  constructor({ quoted, offered, least }) {
    super('slippage_exceeded', `the node now offers ${offered}, below the ${least} this swap accepts (quoted ${quoted})`);
    this.quoted = quoted;
    this.offered = offered;
    this.least = least;
  }
}

export class ClientTimeoutError extends ClientError {
  constructor(message) {
    super('timeout', message);
  }
}

/** The node's limits on what one account makes it spend (docs/protocol.md, "The node's capital and gas",
 * "Swaps"), as connext/errors.py's LIMIT_CODES. */
export const LIMIT_CODES = Object.freeze(
  new Set([
    'collateral_not_justified',
    'collateral_too_small',
    'collateral_limit',
    'withdrawal_too_small',
    'withdrawal_rate_limited',
    'withdrawal_gas_limit',
    'swap_over_limit',
    'swap_daily_limit',
    'exposure_limit',
  ]),
);

/** The typed error for the node's error answer `{"error": {"code", "message", …}}` with a 4xx `status`. */
export function errorFromBody(status, body) {
  let error = body && typeof body === 'object' ? body.error : null;
  if (!error || typeof error !== 'object') error = { code: `http_${status}`, message: `the node answered ${status}` };
  const details = {};
  for (const [key, value] of Object.entries(error)) if (key !== 'code' && key !== 'message') details[key] = value;
  const code = String(error.code ?? 'error');
  const Kind = status === 401 ? AuthenticationError : LIMIT_CODES.has(code) ? LimitError : NodeError;
  return new Kind(code, String(error.message ?? ''), status, details);
}

/** A 5xx: the node could not serve the request now (nothing changed); its own code when it gave one. */
export function unavailableFromBody(status, body, request) {
  const error = body && typeof body === 'object' ? body.error : null;
  if (error && typeof error === 'object' && typeof error.code === 'string') {
    return new NodeUnavailableError(error.code, `${request}: ${error.message ?? status}`);
  }
  return new NodeUnavailableError('node_unavailable', `${request}: the node answered ${status}`);
}
