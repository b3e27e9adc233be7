"""The client's exceptions. Every one is a `ConnextError` with a stable, machine-readable `code`.

- `NodeError`: the node refused a request; `code` is the node's own error code (`stale_nonce`,
  `insufficient_balance`, `collateral_limit`, ...), `status` the HTTP status, `details` the rest of the
  node's error body (for example `latest`, the node's latest signed state).
- `AuthenticationError`: a `NodeError` with status 401 (bad login signature, expired or forged token).
- `LimitError`: a `NodeError` for a request over a limit the node keeps on what one account may make it
  spend (`withdrawal_too_small`, `withdrawal_rate_limited`, `withdrawal_gas_limit`,
  `collateral_not_justified`, `collateral_too_small`, `collateral_limit`, `swap_over_limit`,
  `swap_daily_limit`, `exposure_limit`); nothing changed, and `details` carries the bound.
- `SlippageError`: a swap whose rate moved further than its `max_slippage`; nothing was signed.
- `ValidationError`: the client refused to sign a state (a node proposal, or an update of its own that the
  protocol rules reject); `code` is the protocol's error code, nothing was signed.
- `InvalidArgumentError`: a caller's argument was refused before anything was sent.
- `DisputeError`: a dispute step refused before anything was sent (wrong phase, unknown payment, nothing
  to defund, a disputed state the client does not hold); `code` says which.
- `ChainError`: an on-chain transaction of the user's reverted or could not be sent.
- `NodeUnavailableError`: the node could not be reached.
- `OutcomeUnknownError`: a `NodeUnavailableError` after a payment was sent: the node may have taken it.
  `payment_id` names it; the client's store holds it (status `sending`), its next sync with the node
  settles it, and a retry with the same payment id returns its outcome instead of paying again.
- `TimeoutError`: a wait ran out of time (also a builtin `TimeoutError`).
"""

from __future__ import annotations

import builtins
from typing import Any


class ConnextError(Exception):
    """Base of every client error: `code` for programs, the message for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class NodeError(ConnextError):
    """The node answered with an error (`{"error": {"code", "message", ...}}`)."""

    def __init__(self, code: str, message: str, status: int, details: dict[str, Any] | None = None) -> None:
        super().__init__(code, message)
        self.status = status
        self.details = details or {}

    def __str__(self) -> str:
        return f"{self.code} ({self.status}): {self.message}"


class AuthenticationError(NodeError):
    """Login failed, or the node no longer accepts the token."""


LIMIT_CODES = frozenset(
    {
        "withdrawal_too_small",
        "withdrawal_rate_limited",
        "withdrawal_gas_limit",
        "collateral_not_justified",
        "collateral_too_small",
        "collateral_limit",
        "swap_over_limit",
        "swap_daily_limit",
        "exposure_limit",
    }
)


class LimitError(NodeError):
    """The node refused a request over one of its limits on what one account may make it spend
    (collateral it locks, gas it pays); nothing was signed or sent. `details` holds the bound:
    `minimum`, `justified`, `retryAfter` (seconds), `gasPerDay`, `gasSpent`, as decimal strings."""

    @property
    def retry_after(self) -> int | None:
        """Seconds until the same request can pass (rate and gas limits), when the node said."""
        value = self.details.get("retryAfter")
        return int(value) if isinstance(value, str) and value.isdigit() else None


class SlippageError(ConnextError):
    """The node's rate moved further from the quote a swap started from than its `max_slippage`
    allows; nothing was signed. `quoted` and `offered` are the amounts the user would have received
    then and now, `least` the least it accepted."""

    def __init__(self, *, quoted: int, offered: int, least: int) -> None:
        super().__init__(
            "slippage_exceeded",
            f"the node now offers {offered}, below the {least} this swap accepts (quoted {quoted})",
        )
        self.quoted = quoted
        self.offered = offered
        self.least = least


class ValidationError(ConnextError):
    """A state the client refuses to sign (the protocol rules or the client's policy reject it)."""

    def __init__(self, code: str, message: str, *, field: str | None = None) -> None:
        super().__init__(code, message)
        self.field = field


class InvalidArgumentError(ConnextError, ValueError):
    """An argument refused before anything was sent or signed."""


class DisputeError(ConnextError):
    """A dispute or defund the chain would refuse, or that would pay the user nothing; nothing was sent."""


class ChainError(ConnextError):
    """A transaction of the user's on chain failed (reverted, or could not be sent)."""


class NodeUnavailableError(ConnextError, ConnectionError):
    """The node did not answer (connection refused, reset, or an HTTP 5xx)."""


class OutcomeUnknownError(NodeUnavailableError):
    """The node stopped answering once payment `payment_id` was sent: it may or may not have taken it."""

    def __init__(self, payment_id: str, message: str) -> None:
        super().__init__("outcome_unknown", message)
        self.payment_id = payment_id


class TimeoutError(ConnextError, builtins.TimeoutError):
    """A wait for an event or a condition ran out of time."""

    def __init__(self, message: str) -> None:
        super().__init__("timeout", message)
