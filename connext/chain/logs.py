"""Reading a contract's event logs newest first, in block windows a public RPC provider accepts.

Providers refuse `eth_getLogs` over a large block range (commonly 1,000 to 10,000 blocks), so a scan
"from block 0 to latest" works on a local chain and fails on mainnet. Dispute handling needs the newest
few events of one channel (who disputed last, the payout of the latest defund), which lie near the
head: scanning back window by window and stopping as soon as the caller has what it needs costs one
request in the usual case and stays within every provider's limit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

# A range every common provider serves (Infura and Alchemy take 10,000; some nodes fewer).
LOG_WINDOW_BLOCKS = 2_000


def scan_back(
    event: Any,
    *,
    to_block: int,
    enough: Callable[[Sequence[Any]], bool],
    from_block: int = 0,
    window: int = LOG_WINDOW_BLOCKS,
    argument_filters: dict[str, Any] | None = None,
) -> list[Any]:
    """The logs of `event` (a web3 contract event, e.g. `contract.events.ChannelDefunded`) between
    `from_block` and `to_block`, read in windows of `window` blocks from `to_block` backwards until
    `enough(logs read so far)` is true or `from_block` is reached. Returned oldest first, like
    `get_logs`; when the scan stopped early, the older windows are not in it."""
    if window < 1:
        raise ValueError("the window is at least one block")
    found: list[Any] = []
    high = to_block
    while high >= from_block:
        low = max(from_block, high - window + 1)
        logs = event().get_logs(from_block=low, to_block=high, argument_filters=argument_filters)
        found = [*logs, *found]
        if enough(found):
            break
        high = low - 1
    return found
