"""The API's JSON parser: DRF's, with nesting bounded (Python's parser fails on a deep document with
RecursionError, which would be a 500, and our code walks what it parses recursively)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import parsers

from channels_app.api.errors import ApiError
from channels_app.edge_limits import json_within_depth


def too_deep(limit: int) -> ApiError:
    return ApiError("json_too_deep", f"JSON may nest arrays and objects at most {limit} deep.")


class JSONParser(parsers.JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        limit = settings.API_MAX_JSON_DEPTH
        try:
            document = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise too_deep(limit) from None
        if not json_within_depth(document, limit):
            raise too_deep(limit)
        return document
