"""What one send's outcome means: an HTTP reply or an httpx exception -> a typed `IBMError`.

`status_failure` maps a non-2xx reply (after the client's one re-authentication on a 401):

- the IAM exchange answered 400/401/403 -> `IBMAuthError` (the key was refused);
- 401 (a fresh token refused too) or 403 -> `IBMAuthError`; 404 -> `IBMNotFound`;
- 429 -> `IBMRateLimited`, 502/503/504 -> `IBMError`, both returned as a retryable `Failure` (a 429 even
  for a create: IBM refused before acting), with the reply's ``Retry-After``;
- anything else (other 4xx/5xx, a redirect) -> raised at once.

`transport_failure` maps an httpx exception: a connect error or connect/pool timeout (nothing was sent) is
always retryable; a read timeout or a broken connection only for idempotent calls; anything else (a bad
URL, ...) is raised at once. Messages name the host, never a URL with query values or a secret.
"""

from __future__ import annotations

from typing import Any

import httpx

from qauvern_hpc.ibm.errors import IBMAuthError, IBMError, IBMNotFound, IBMRateLimited, one_line
from qauvern_hpc.ibm.retry import RETRY_STATUSES, Failure, parse_retry_after


def body(resp: httpx.Response) -> Any:
    """The reply's JSON, else the start of its text (for `ibm_message`), else None."""
    try:
        return resp.json()
    except ValueError:
        return one_line(resp.text, 200) if resp.text else None


def status_failure(
    call: str, resp: httpx.Response, message: str | None, *, iam: bool, idempotent: bool
) -> Failure:
    """A retryable `Failure` for 429/502/503/504; raises the typed error of any other non-2xx reply."""
    status = resp.status_code
    if iam and status in (400, 401, 403):
        raise IBMAuthError(call, status, message or "IAM refused the API key")
    if status == 401:
        raise IBMAuthError(call, status, message or "unauthorized", hint="a fresh IAM token was refused too")
    if status == 403:
        raise IBMAuthError(call, status, message or "forbidden", hint="the API key has no access to this")
    if status == 404:
        raise IBMNotFound(call, status, message or "not found")
    if status not in RETRY_STATUSES:
        if 300 <= status < 400:
            message = f"unexpected redirect to {resp.headers.get('Location', '?')}"
        raise IBMError(call, status, message)
    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
    error: IBMError
    if status == 429:
        error = IBMRateLimited(call, status, message or "rate limited", retry_after=retry_after)
    else:
        error = IBMError(call, status, message)
    # A 429 is IBM refusing before acting: even a create is safe to send again.
    return Failure(error, retryable=idempotent or status == 429, retry_after=retry_after)


def transport_failure(
    exc: httpx.HTTPError | httpx.InvalidURL, call: str, host: str, *, timeout: float, idempotent: bool
) -> Failure:
    """A `Failure` for a send that got no reply; raises for one that could not be sent at all."""
    name = type(exc).__name__
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        # The request never left: safe to retry whatever it is.
        return Failure(IBMError(call, None, f"cannot connect to {host} ({name})"), retryable=True)
    if isinstance(exc, httpx.TimeoutException):
        return Failure(
            IBMError(call, None, f"no reply from {host} within {timeout:.1f} s ({name})"),
            retryable=idempotent,
        )
    if isinstance(exc, httpx.NetworkError | httpx.RemoteProtocolError | httpx.ProxyError):
        return Failure(IBMError(call, None, f"connection to {host} failed ({name})"), retryable=idempotent)
    raise IBMError(call, None, f"cannot send to {host} ({name})") from None
