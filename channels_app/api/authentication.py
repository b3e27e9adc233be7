"""Bearer-token authentication for the API: `Authorization: Bearer <token>` from the login flow."""

from __future__ import annotations

from dataclasses import dataclass

from rest_framework import authentication
from rest_framework.request import Request

from channels_app.api.errors import ApiError
from channels_app.edge_limits import remember_token
from channels_app.services.auth import AuthError, auth_token_address


@dataclass(frozen=True)
class ChannelUser:
    """The caller: whoever holds the key of `address`."""

    address: str
    is_authenticated: bool = True
    is_anonymous: bool = False


class BearerTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[ChannelUser, str] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        if scheme != self.keyword or not token.strip():
            raise ApiError(
                "invalid_token", "Use the header 'Authorization: Bearer <token>'.", http_status=401
            )
        token = token.strip()
        try:
            address = auth_token_address(token=token)
        except AuthError as exc:
            raise ApiError(exc.code, exc.message, http_status=401) from None
        remember_token(token, address)  # its next requests are paced as its account (FairShare)
        return ChannelUser(address=address), token

    def authenticate_header(self, request: Request) -> str:
        return self.keyword
