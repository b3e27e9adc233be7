"""Test-only crash points on the payment path: the node process exits (status 70) at a named point, so
a test can prove what a crash there leaves behind. Unset everywhere but those tests, each check is
one comparison.

`CONNEXT_TEST_CRASH_AT="<point>:<user address>[:<update type>]"`, the points:

- `committed`: a request of the user's (an update of that type, or a countersignature of a proposal
  of that type) is committed and not yet answered;
- `proposed`: the node's proposal to the user (of that type) is committed and not yet pushed.
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)

POINTS = ("committed", "proposed")
CRASH_STATUS = 70


def _parse(spec: str) -> tuple[str, str, str] | None:
    if not spec:
        return None
    point, _, rest = spec.partition(":")
    address, _, update_type = rest.partition(":")
    if point not in POINTS or not address:
        raise ValueError(f"CONNEXT_TEST_CRASH_AT={spec!r}: want <{'|'.join(POINTS)}>:<address>[:<type>]")
    return point, address.lower(), update_type


_AT = _parse(os.environ.get("CONNEXT_TEST_CRASH_AT", ""))
ARMED = _AT is not None


def reached(point: str, user: str, update_type: str) -> None:
    """Exit the process here when this is the point the test named."""
    if _AT is None:
        return
    at_point, address, wanted_type = _AT
    if point == at_point and user.lower() == address and wanted_type in ("", update_type):
        logger.warning("test crash point %s reached for %s (%s): exiting", point, user, update_type)
        os._exit(CRASH_STATUS)
