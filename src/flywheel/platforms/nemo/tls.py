"""TLS to NMP: certificate checks against the system CAs plus ``NMP_CA_BUNDLE``.

Both HTTP clients of :class:`~flywheel.platforms.nemo.platform.NemoPlatform` (the SDK's and
the raw one for the Data Store) are built on :class:`CertificateErrorTransport`, so a
certificate that does not verify fails the call at once with a message that names NMP, the
URL and the fix, instead of a retried "Connection error.".
"""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import structlog

from flywheel.errors import ConfigError

log = structlog.get_logger(__name__)


def tls_verify(
    ca_bundle: Path | None, *, verify_ssl: bool, urls: tuple[str, ...]
) -> ssl.SSLContext | bool:
    """How NMP's certificates are checked: the system CAs, plus ``ca_bundle``, or not at all."""
    if not verify_ssl:
        log.warning(
            "nmp_tls_verification_disabled",
            urls=[u for u in urls if u.lower().startswith("https://")],
            fix="NMP_VERIFY_SSL=false: anyone on the path can impersonate NMP; set "
            "NMP_CA_BUNDLE to NMP's CA bundle and NMP_VERIFY_SSL=true instead",
        )
        return False
    context = ssl.create_default_context()
    if ca_bundle is not None:
        try:
            context.load_verify_locations(cafile=str(ca_bundle))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"NMP_CA_BUNDLE {str(ca_bundle)!r} cannot be loaded as a PEM CA bundle: {exc}"
            ) from exc
    return context


CERTIFICATE_ERROR_STATUS = 495
"""The status of the answer made up for a failed certificate check (nginx's "SSL Certificate
Error"): a 4xx, so the call fails at once with the reason instead of being retried."""


class CertificateErrorTransport(httpx.BaseTransport):
    """HTTPS to NMP that turns a failed certificate check into an answer naming the fix.

    The SDK reports any transport failure as a bare "Connection error." and retries it as
    if NMP were down; a certificate that does not verify will not verify on retry. So the
    failure becomes a 495 response whose ``detail`` names NMP, the URL and NMP_CA_BUNDLE,
    which the call layer raises as a (permanent) :class:`~flywheel.errors.PlatformError`.
    """

    def __init__(self, verify: ssl.SSLContext | bool) -> None:
        """Connect with ``verify`` (an SSL context, or False for no checks)."""
        self._inner = httpx.HTTPTransport(verify=verify)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request``; answer 495 when the server's certificate does not verify."""
        try:
            return self._inner.handle_request(request)
        except httpx.ConnectError as exc:
            reason = _certificate_failure(exc)
            if reason is None:
                raise
            origin = f"{request.url.scheme}://{request.url.netloc.decode('ascii')}"
            detail = (
                f"the TLS certificate of NMP at {origin} could not be verified ({reason}); "
                "if NMP uses a private CA, set NMP_CA_BUNDLE to its PEM bundle "
                "(NMP_VERIFY_SSL=false turns checks off, for testing only)"
            )
            return httpx.Response(
                CERTIFICATE_ERROR_STATUS, json={"detail": detail}, request=request
            )

    def close(self) -> None:
        """Close the pooled connections."""
        self._inner.close()


def _certificate_failure(exc: BaseException) -> str | None:
    """The verification error behind ``exc`` (None when it failed for another reason)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen.verify_message or str(seen)
        seen = seen.__cause__ or seen.__context__
    text = str(exc)
    return text if "CERTIFICATE_VERIFY_FAILED" in text else None
