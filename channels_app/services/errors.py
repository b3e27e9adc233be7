"""The one shape of a refused service call: what every edge (REST, socket, admin, CLI) turns into its
answer without knowing which service refused."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """A refusal: a stable `code` (the API's error code), a message for people, the HTTP status an
    edge answers with, and extras (the bound that was hit, the state to sync to)."""

    def __init__(
        self, code: str, message: str, *, status: int = 400, extra: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.extra = extra or {}
