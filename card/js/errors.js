// Typed errors of the protocol core, one class per code of connext/protocol/errors.py.
// The codes are part of the wire API (peers switch on them): they mirror Python's exactly.

export class ProtocolError extends Error {
  static code = 'protocol_error';

  constructor(message, { field = null } = {}) {
    super(message);
    this.name = new.target.name;
    this.code = new.target.code;
    this.field = field;
  }

  toString() {
    return `${this.code}${this.field ? ` (${this.field})` : ''}: ${this.message}`;
  }
}

const define = (name, code) => {
  const cls = { [name]: class extends ProtocolError { static code = code; } }[name];
  return cls;
};

export const MalformedError = define('MalformedError', 'malformed');
export const StaleNonceError = define('StaleNonceError', 'stale_nonce');
export const NonceGapError = define('NonceGapError', 'nonce_gap');
export const WrongChannelError = define('WrongChannelError', 'wrong_channel');
export const ChannelExistsError = define('ChannelExistsError', 'channel_exists');
export const NoChannelError = define('NoChannelError', 'no_channel');
export const InvalidSetupError = define('InvalidSetupError', 'invalid_setup');
export const BadTimeoutError = define('BadTimeoutError', 'bad_timeout');
export const UnauthorizedError = define('UnauthorizedError', 'unauthorized');
export const BadSignatureError = define('BadSignatureError', 'bad_signature');
export const AmountOutOfRangeError = define('AmountOutOfRangeError', 'amount_out_of_range');
export const InsufficientBalanceError = define('InsufficientBalanceError', 'insufficient_balance');
export const UnknownAssetError = define('UnknownAssetError', 'unknown_asset');
export const UnknownDefinitionError = define('UnknownDefinitionError', 'unknown_definition');
export const BadTransferStateError = define('BadTransferStateError', 'bad_transfer_state');
export const DuplicateTransferError = define('DuplicateTransferError', 'duplicate_transfer');
export const UnknownTransferError = define('UnknownTransferError', 'unknown_transfer');
export const BadResolverError = define('BadResolverError', 'bad_resolver');
export const ExpiredError = define('ExpiredError', 'expired');
export const BadDepositError = define('BadDepositError', 'bad_deposit');
export const NoNewDepositError = define('NoNewDepositError', 'no_new_deposit');
export const DepositExceedsChainError = define('DepositExceedsChainError', 'deposit_exceeds_chain');
export const DisputeNotOverError = define('DisputeNotOverError', 'dispute_not_over');
export const DisputeMismatchError = define('DisputeMismatchError', 'dispute_mismatch');
export const InvariantViolationError = define('InvariantViolationError', 'invariant_violated');
export const BadCiphertextError = define('BadCiphertextError', 'bad_ciphertext');
export const SameAssetError = define('SameAssetError', 'same_asset');

export const ERROR_CLASSES = Object.freeze([
  MalformedError,
  StaleNonceError,
  NonceGapError,
  WrongChannelError,
  ChannelExistsError,
  NoChannelError,
  InvalidSetupError,
  BadTimeoutError,
  UnauthorizedError,
  BadSignatureError,
  AmountOutOfRangeError,
  InsufficientBalanceError,
  UnknownAssetError,
  UnknownDefinitionError,
  BadTransferStateError,
  DuplicateTransferError,
  UnknownTransferError,
  BadResolverError,
  ExpiredError,
  BadDepositError,
  NoNewDepositError,
  DepositExceedsChainError,
  DisputeNotOverError,
  DisputeMismatchError,
  InvariantViolationError,
  BadCiphertextError,
  SameAssetError,
]);

export const ERROR_CODES = Object.freeze(new Set(ERROR_CLASSES.map((cls) => cls.code)));
