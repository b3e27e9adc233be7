"""Login with a key: challenge (a one-time nonce) -> signature -> bearer token.

Tokens are random; only their SHA-256 is stored, so a database leak gives no usable token.
A challenge is single use and short lived; a token is good for REST and the websocket until it expires
or its holder logs out (the sockets logged in with it close then, on every node process).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from channels_app import chain, realtime
from channels_app.models import AuthChallenge, AuthToken
from channels_app.services.errors import ServiceError
from connext.protocol import auth as login
from connext.protocol.errors import ProtocolError


class AuthError(ServiceError):
    """A failed login or token check; `code` is the API error code."""


@dataclass(frozen=True)
class IssuedToken:
    token: str
    address: str
    expires_at: datetime


@dataclass(frozen=True)
class ValidToken:
    address: str
    expires_at: datetime
    key_hash: str


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def auth_challenge_create(*, address: str) -> tuple[AuthChallenge, str]:
    """A fresh nonce for `address` (checksummed) and the exact message the client must sign."""
    challenge = AuthChallenge.objects.create(
        address=address,
        nonce=secrets.token_hex(16),
        expires_at=timezone.now() + timedelta(seconds=settings.AUTH_CHALLENGE_TTL_SECONDS),
    )
    message = login.login_message(
        node_address=chain.node_address(), chain_id=chain.chain_id(), nonce=challenge.nonce
    )
    return challenge, message


def auth_token_issue(*, address: str, nonce: str, signature: bytes) -> IssuedToken:
    """Exchange a signed challenge for a token. The challenge is consumed even when the signature fails."""
    with transaction.atomic():
        challenge = AuthChallenge.objects.select_for_update().filter(nonce=nonce, address=address).first()
        if challenge is None or challenge.used_at is not None:
            raise AuthError("unknown_challenge", "No open login challenge with this nonce for this address.")
        challenge.used_at = timezone.now()
        challenge.save(update_fields=["used_at"])
        if challenge.expires_at <= timezone.now():
            raise AuthError("challenge_expired", "The login challenge expired; ask for a new nonce.")
    message = login.login_message(node_address=chain.node_address(), chain_id=chain.chain_id(), nonce=nonce)
    try:
        signer = login.recover_login_signer(message, signature)
    except ProtocolError as exc:
        raise AuthError("bad_signature", f"The login signature is malformed: {exc.message}") from None
    if signer != address:
        raise AuthError("bad_signature", "The login signature was not made by this address.")
    token = secrets.token_urlsafe(32)
    expires_at = timezone.now() + timedelta(seconds=settings.AUTH_TOKEN_TTL_SECONDS)
    AuthToken.objects.create(address=address, key_hash=token_hash(token), expires_at=expires_at)
    return IssuedToken(token=token, address=address, expires_at=expires_at)


def auth_token_check(*, token: str) -> ValidToken:
    """The token's holder and expiry; raises AuthError when it is unknown (never issued, or revoked)
    or expired."""
    key_hash = token_hash(token)
    record = AuthToken.objects.filter(key_hash=key_hash).values_list("address", "expires_at").first()
    return token_valid(key_hash, record)


def token_valid(key_hash: str, record: tuple[str, datetime] | None) -> ValidToken:
    """The token whose hash is `key_hash`, from its record (address, expiry) as read, or None when
    there is none: `AuthError` unless it is there and has not expired. (The update engine reads the
    record on its own connection, `engine.process`.)"""
    if record is None:
        raise AuthError("invalid_token", "The token is not valid.")
    address, expires_at = record
    if expires_at <= timezone.now():
        raise AuthError("token_expired", "The token expired; log in again.")
    return ValidToken(address=address, expires_at=expires_at, key_hash=key_hash)


def auth_token_address(*, token: str) -> str:
    """The address a token stands for; raises AuthError when it is unknown or expired."""
    return auth_token_check(token=token).address


def auth_token_revoke(*, token: str) -> None:
    """Log out: the token stops working at once, and once that commits every socket logged in with
    it closes, on whichever node process holds it."""
    key_hash = token_hash(token)
    with transaction.atomic():
        addresses = list(AuthToken.objects.filter(key_hash=key_hash).values_list("address", flat=True))
        AuthToken.objects.filter(key_hash=key_hash).delete()
        for address in addresses:
            transaction.on_commit(
                lambda a=address: realtime.sockets_close_for_token(a, key_hash), robust=True
            )


def auth_records_prune() -> int:
    """Delete the challenges that can no longer be used (expired or used) and expired tokens.
    Returns how many rows went."""
    now = timezone.now()
    challenges, _ = AuthChallenge.objects.filter(Q(expires_at__lt=now) | Q(used_at__isnull=False)).delete()
    tokens, _ = AuthToken.objects.filter(expires_at__lt=now).delete()
    return challenges + tokens
