"""IAM authentication: the API key, the bearer token cache, and scrubbing both out of messages.

The API key is exchanged at IAM (``POST {iam}/identity/token``, form
``grant_type=urn:ibm:params:oauth:grant-type:apikey&apikey=KEY``) for a bearer token. `TokenCache` keeps the
token (thread-safe: one lock, so concurrent callers share one exchange) and fetches it again shortly before
it expires (``expires_in``, else ``expiration``; the margin is a minute, or a fifth of a short lifetime).
A token IBM refused (401) is dropped with `forget`, unless another thread already replaced it, so
concurrent 401s share one refresh. The key and the token never appear in a repr; `scrub` removes them from
any text before it is kept.

How the token is fetched (HTTP, retries) is the client's business: `bearer` takes a `fetch` callable.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from qauvern_hpc.core.secret import Secret

if TYPE_CHECKING:
    from qauvern_hpc.ibm.models import Token

log = logging.getLogger("qauvern_hpc.ibm")

APIKEY_GRANT = "urn:ibm:params:oauth:grant-type:apikey"
TOKEN_MARGIN = 60.0  # refresh at most this many seconds before the token expires...
TOKEN_MARGIN_FRACTION = 0.2  # ...and at most this fraction of its lifetime (short-lived tokens)
DEFAULT_TOKEN_LIFETIME = 600.0  # when IAM gives neither expires_in nor expiration

# fetch(form, deadline_at) -> the IAM reply; form is the body of the token exchange.
Fetch = Callable[[dict[str, str], float], "Token"]


def token_lifetime(tok: Token, now: float | None = None) -> float:
    """Seconds the token is valid for: ``expires_in``, else ``expiration`` (epoch) minus now, else 600."""
    if tok.expires_in is not None:
        return tok.expires_in
    if tok.expiration is not None:
        return max(0.0, tok.expiration - (time.time() if now is None else now))
    return DEFAULT_TOKEN_LIFETIME


class TokenCache:
    """The bearer token of one API key, fetched on first use, refreshed before expiry and after a 401."""

    def __init__(self, api_key: Secret, clock: Callable[[], float]) -> None:
        self._api_key = api_key
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0

    def __repr__(self) -> str:
        return "TokenCache(api_key=<redacted>)"

    def bearer(self, deadline_at: float, fetch: Fetch) -> str:
        """The cached token, fetched first (under the lock) when missing or about to expire."""
        with self._lock:
            if self._token is not None and self._clock() < self._refresh_at:
                return self._token
            tok = fetch({"grant_type": APIKEY_GRANT, "apikey": self._api_key.get()}, deadline_at)
            lifetime = token_lifetime(tok)
            margin = min(TOKEN_MARGIN, lifetime * TOKEN_MARGIN_FRACTION)
            self._token = tok.access_token
            self._refresh_at = self._clock() + lifetime - margin
            log.debug("IAM token obtained, valid for %.0f s", lifetime)
            return tok.access_token

    def forget(self, stale: str) -> None:
        """Drop the token a 401 refused, unless another thread already replaced it."""
        with self._lock:
            if self._token == stale:
                self._token = None

    def scrub(self, text: str | None) -> str | None:
        """`text` without the API key and the current token."""
        if not text:
            return text
        for secret in (self._api_key.get(), self._token):
            if secret and secret in text:
                text = text.replace(secret, "<redacted>")
        return text
