"""IAM: API keys are exchanged for opaque bearer tokens, and tokens are checked on every authenticated call.

Invariants: tokens live only here, never in the model (a state dump holds no token, and replacing the state
keeps them); a token is valid until `token_ttl_seconds` of emulated time have passed, it is revoked
(`expire_tokens`) or its account disappears; at most ~10,000 tokens are remembered (the oldest are
forgotten). Not thread-safe: call under `EmulatorState`'s lock.
"""

from __future__ import annotations

import secrets
import time as time_module
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from qauvern_hpc.devtools.emulator.errors import ApiError
from qauvern_hpc.devtools.emulator.store import Store

APIKEY_GRANT = "urn:ibm:params:oauth:grant-type:apikey"


@dataclass
class _Token:
    account: str
    key_fingerprint: str
    expires_at: datetime
    revoked: bool = False


@dataclass(frozen=True)
class Principal:
    """Who a bearer token belongs to."""

    account: str
    key_fingerprint: str


def check_token_form(form: Mapping[str, str]) -> str:
    """The API key of a well-formed `POST /identity/token` form (IAM's 400 otherwise)."""
    grant = form.get("grant_type", "")
    if grant != APIKEY_GRANT:
        raise ApiError(
            400, "BXNIM0103E", f"Property 'grant_type' is missing or unsupported: {grant!r}.", style="iam"
        )
    apikey = form.get("apikey", "")
    if not apikey:
        raise ApiError(400, "BXNIM0109E", "Property missing or empty. Property name(s): apikey", style="iam")
    return apikey


def bearer(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header (401 otherwise)."""
    if not authorization:
        raise ApiError(401, "unauthorized", "Missing Authorization header (expected 'Bearer <IAM token>')")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "Authorization header must be 'Bearer <IAM token>'")
    return token.strip()


class Iam:
    """Issued tokens over a `Store` (which holds the API keys and accounts)."""

    def __init__(self, store: Store) -> None:
        self._s = store
        self._tokens: dict[str, _Token] = {}

    def issue_token(self, apikey: str, now: datetime) -> dict[str, Any]:
        key = self._s.keys.get(apikey)
        if key is None:
            raise ApiError(400, "BXNIM0415E", "Provided API key could not be found.", style="iam")
        ttl = self._s.m.token_ttl_seconds
        token = secrets.token_urlsafe(32)
        self._tokens[token] = _Token(key.account, key.fingerprint or "", now + timedelta(seconds=ttl))
        if len(self._tokens) > 10000:  # forget the oldest
            for old in list(self._tokens)[:1000]:
                del self._tokens[old]
        return {
            "access_token": token,
            "refresh_token": "not_supported",
            "ims_user_id": 1,
            "token_type": "Bearer",
            "expires_in": ttl,
            # Clients compare `expiration` with their own wall clock to refresh ahead of time, so it is
            # wall-clock based; the emulator itself expires the token on its emulated clock.
            "expiration": int(time_module.time()) + ttl,
            "scope": "ibm openid",
        }

    def authenticate(self, token: str, now: datetime) -> Principal:
        tok = self._tokens.get(token)
        if tok is None:
            raise ApiError(401, "unauthorized", "The IAM token is not valid")
        if tok.revoked or now >= tok.expires_at:
            raise ApiError(401, "unauthorized", "The IAM token has expired")
        if tok.account not in self._s.accounts:
            raise ApiError(401, "unauthorized", "The IAM token's account no longer exists")
        return Principal(tok.account, tok.key_fingerprint)

    def expire_tokens(self) -> int:
        live = [t for t in self._tokens.values() if not t.revoked]
        for tok in live:
            tok.revoked = True
        return len(live)
