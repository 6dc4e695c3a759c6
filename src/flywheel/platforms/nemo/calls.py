"""Every NMP request goes through :class:`NmpCalls`: timeout, bounded retries, clear errors.

The SDK's own retries are switched off (``max_retries=0``) so that one policy, ours, applies
to SDK and raw-HTTP calls alike: transient failures (connection errors, timeouts, 408, 429,
5xx) raise :class:`~flywheel.errors.PlatformUnavailable` and are retried with exponential
backoff a bounded number of times; anything else raises
:class:`~flywheel.errors.PlatformError` at once. Every message names the NMP service, the
endpoint, the HTTP status and the platform's own words.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import nemo_microservices as nm
import structlog
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from flywheel.errors import PlatformError, PlatformUnavailable

T = TypeVar("T")
log = structlog.get_logger(__name__)

_TRANSIENT_STATUS = frozenset({408, 429})
_MAX_DETAIL = 300


class NmpNotFound(PlatformError):
    """The platform answered 404: the named entity or job does not exist."""


class NmpExists(PlatformError):
    """The platform answered 409 (or DMS's 500 "already exists"): the entity exists."""


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with exponential backoff on transient failures."""

    attempts: int = 4
    initial_wait_s: float = 1.0
    max_wait_s: float = 20.0


def _detail(body: object) -> str:
    if isinstance(body, dict) and "detail" in body:
        body = body["detail"]
    text = body if isinstance(body, str) else json.dumps(body, default=str)
    return text[:_MAX_DETAIL]


def _error_for(service: str, endpoint: str, status: int, body: object) -> PlatformError:
    detail = _detail(body)
    message = f"NMP {service}: {endpoint} returned HTTP {status}: {detail}"
    if status == 404:
        return NmpNotFound(message)
    if status == 409 or (status == 500 and "already exists" in detail.lower()):
        return NmpExists(message)
    if status in _TRANSIENT_STATUS or status >= 500:
        return PlatformUnavailable(message)
    return PlatformError(message)


def _translated(service: str, endpoint: str, call: Callable[[], T]) -> T:
    """Run one SDK call, translating SDK exceptions into ours (no retry)."""
    try:
        return call()
    except nm.APIStatusError as exc:
        raise _error_for(service, endpoint, exc.status_code, exc.body) from exc
    except nm.APIConnectionError as exc:  # includes APITimeoutError
        raise PlatformUnavailable(f"NMP {service}: {endpoint} unreachable: {exc.message}") from exc
    except nm.APIError as exc:  # e.g. a response that fails validation
        raise PlatformError(f"NMP {service}: {endpoint} failed: {exc.message}") from exc


def as_dict(value: object) -> dict[str, Any]:
    """A JSON-able dict from an SDK model, a dict, or ``None`` (empty)."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        result = to_dict(mode="json", exclude_unset=False)
        if isinstance(result, dict):
            return result
    raise PlatformError(f"NMP returned an unexpected value of type {type(value).__name__}")


class NmpCalls:
    """Runs SDK and raw-HTTP calls under the retry policy and translates their errors."""

    def __init__(self, *, retry: RetryPolicy) -> None:
        self.retry = retry

    def run(self, service: str, endpoint: str, call: Callable[[], T]) -> T:
        """Run ``call`` (an SDK call); retry transient failures; raise our errors."""
        return self._retrying(lambda: _translated(service, endpoint, call), service, endpoint)

    def create_or_adopt(
        self,
        service: str,
        endpoint: str,
        *,
        create: Callable[[], object],
        find: Callable[[], dict[str, Any] | None],
    ) -> dict[str, Any]:
        """Create once; before any retry, adopt what the failed attempt may have made.

        A create that NMP performed but answered with a 5xx or a timeout would otherwise
        leave a second job (a second GPU) behind after the retry. ``find`` looks the object
        up by what the create tagged it with (its name, or a ``custom_fields`` key) and
        returns it, or ``None`` when the failed attempt made nothing.
        """
        attempted = False

        def once() -> dict[str, Any]:
            nonlocal attempted
            if attempted and (found := find()) is not None:
                log.info("nmp_create_adopted", service=service, endpoint=endpoint)
                return found
            attempted = True
            return as_dict(_translated(service, endpoint, create))

        return self._retrying(once, service, endpoint)

    def http(
        self, client: httpx.Client, service: str, method: str, url: str, **kwargs: Any
    ) -> httpx.Response:
        """Send one raw HTTP request (where the SDK has no endpoint); retry; raise our errors.

        Returns the response for any 2xx status.
        """
        endpoint = f"{method} {httpx.URL(url).path}"

        def once() -> httpx.Response:
            try:
                response = client.request(method, url, **kwargs)
            except httpx.TimeoutException as exc:
                raise PlatformUnavailable(f"NMP {service}: {endpoint} timed out") from exc
            except httpx.TransportError as exc:
                raise PlatformUnavailable(f"NMP {service}: {endpoint} unreachable: {exc}") from exc
            if response.is_success:
                return response
            try:
                body: object = response.json()
            except ValueError:
                body = response.text
            raise _error_for(service, endpoint, response.status_code, body)

        return self._retrying(once, service, endpoint)

    def _retrying(self, once: Callable[[], T], service: str, endpoint: str) -> T:
        def before_sleep(state: RetryCallState) -> None:
            failure = state.outcome.exception() if state.outcome else None
            log.warning(
                "nmp_call_retry",
                service=service,
                endpoint=endpoint,
                attempt=state.attempt_number,
                error=str(failure),
            )

        retrying = Retrying(
            stop=stop_after_attempt(max(1, self.retry.attempts)),
            wait=wait_exponential(
                multiplier=self.retry.initial_wait_s,
                min=self.retry.initial_wait_s,
                max=self.retry.max_wait_s,
            ),
            retry=retry_if_exception_type(PlatformUnavailable),
            before_sleep=before_sleep,
            reraise=True,
        )
        return retrying(once)


def cancel_unless_ended(
    calls: NmpCalls,
    *,
    service: str,
    endpoint: str,
    cancel: Callable[[], object],
    ended: Callable[[], bool],
) -> None:
    """Cancel an NMP job; one that is gone, ended or already cancelling needs nothing.

    A refusal because the job ended during the request (a race with completion, or a second
    cancel) is success too; transient failures propagate so the caller retries.
    """
    if ended():
        return
    try:
        calls.run(service, endpoint, cancel)
    except PlatformUnavailable:
        raise
    except PlatformError:
        if not ended():
            raise
