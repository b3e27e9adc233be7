"""Transfer meta: off-chain details that travel with a `create` update (the recipient of a routed
payment, the preimage encrypted to it, a link's expiry, a memo). The transfer state commits to them by
`metaHash = keccak256(canonical JSON)`; no meta at all hashes to zero."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from connext.protocol.encoding import ZERO_BYTES32, keccak256
from connext.protocol.errors import MalformedError

MAX_META_BYTES = 4096


def canonical_meta(meta: Mapping[str, Any]) -> bytes:
    """Sorted keys, no spaces, UTF-8: the one byte form both sides hash."""
    try:
        raw = json.dumps(meta, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise MalformedError(f"meta must be plain JSON: {exc}", field="meta") from None
    encoded = raw.encode("utf-8")
    if len(encoded) > MAX_META_BYTES:
        raise MalformedError(f"meta is limited to {MAX_META_BYTES} bytes", field="meta")
    return encoded


def meta_hash(meta: Mapping[str, Any] | None) -> bytes:
    if not meta:
        return ZERO_BYTES32
    return keccak256(canonical_meta(meta))
