"""NMP over HTTPS with a private CA: verified with NMP_CA_BUNDLE, refused (naming the fix)
without it, and unverified (with a warning) only when NMP_VERIFY_SSL=false."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from flywheel.errors import PlatformError
from flywheel.platforms.base import DatasetFiles
from flywheel.platforms.nemo import NemoPlatform, RetryPolicy
from flywheel.settings import Settings
from tests.fake_nmp import FakeNMP
from tests.fake_nmp.datastore_app import create_datastore_app
from tests.fake_nmp.entity_app import create_entity_app
from tests.fake_nmp.nim_app import create_nim_app
from tests.security.tls_support import PrivateCA, serve_https

FAST_RETRY = RetryPolicy(attempts=3, initial_wait_s=0.01, max_wait_s=0.05)


@dataclass(frozen=True)
class HttpsNMP:
    state: FakeNMP
    base_url: str
    datastore_url: str
    nim_url: str

    def settings(self, **tls: object) -> Settings:
        return Settings(
            nmp_base_url=self.base_url,
            nmp_datastore_url=self.datastore_url,
            nmp_nim_url=self.nim_url,
            **tls,  # type: ignore[arg-type]
        )


@pytest.fixture
def https_nmp(private_ca: PrivateCA) -> Iterator[HttpsNMP]:
    """The fake NMP's three hosts, each behind a certificate from the private CA."""
    state = FakeNMP()
    with ExitStack() as stack:
        urls = [
            stack.enter_context(serve_https(app, private_ca))
            for app in (
                create_entity_app(state),
                create_datastore_app(state),
                create_nim_app(state),
            )
        ]
        yield HttpsNMP(state, *urls)


@pytest.fixture
def files(tmp_path: Path) -> DatasetFiles:
    data = tmp_path / "eval.jsonl"
    data.write_text('{"request": {"messages": []}, "response": {"choices": []}}\n')
    return DatasetFiles(root=tmp_path, eval=data)


def _platform(settings: Settings) -> NemoPlatform:
    # from_settings, then the test's fast retry policy on an otherwise identical platform.
    built = NemoPlatform.from_settings(settings)
    built.close()
    return NemoPlatform(
        base_url=str(settings.nmp_base_url),
        datastore_url=str(settings.nmp_datastore_url),
        nim_url=str(settings.nmp_nim_url),
        retry=FAST_RETRY,
        timeout_s=5.0,
        ca_bundle=settings.nmp_ca_bundle,
        verify_ssl=settings.nmp_verify_ssl,
    )


def test_with_the_ca_bundle_the_upload_goes_through_verified_tls(
    https_nmp: HttpsNMP, private_ca: PrivateCA, files: DatasetFiles
) -> None:
    settings = https_nmp.settings(NMP_CA_BUNDLE=str(private_ca.ca_file))
    assert settings.nmp_verify_ssl is True
    platform = NemoPlatform.from_settings(settings)
    try:
        handle = platform.upload_datasets(job_id="tls-job", files=files)
    finally:
        platform.close()

    assert "dfwbp" in https_nmp.state.namespaces
    repo = f"dfwbp/{handle['eval_files']['base'].split('/')[-2]}"
    assert "eval_data.jsonl" in https_nmp.state.repos[repo]


def test_without_the_ca_bundle_the_call_fails_at_once_naming_nmp_the_url_and_the_fix(
    https_nmp: HttpsNMP, files: DatasetFiles
) -> None:
    platform = _platform(https_nmp.settings())
    try:
        with pytest.raises(PlatformError) as caught:
            platform.upload_datasets(job_id="tls-job", files=files)
    finally:
        platform.close()

    message = str(caught.value)
    assert "NMP" in message
    assert https_nmp.base_url in message
    assert "NMP_CA_BUNDLE" in message
    assert "certificate" in message.lower()
    assert https_nmp.state.namespaces == {}  # nothing reached the server


def test_verification_off_works_but_warns(https_nmp: HttpsNMP, files: DatasetFiles) -> None:
    settings = https_nmp.settings(NMP_VERIFY_SSL="false")
    with capture_logs() as logs:
        platform = NemoPlatform.from_settings(settings)
    try:
        platform.upload_datasets(job_id="tls-job", files=files)
    finally:
        platform.close()

    assert "dfwbp" in https_nmp.state.namespaces
    warnings = [e for e in logs if e["event"] == "nmp_tls_verification_disabled"]
    assert len(warnings) == 1
    assert warnings[0]["log_level"] == "warning"
    assert https_nmp.base_url in warnings[0]["urls"]
    assert "NMP_CA_BUNDLE" in warnings[0]["fix"]


def test_a_missing_ca_bundle_stops_startup_naming_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="NMP_CA_BUNDLE") as caught:
        Settings(NMP_CA_BUNDLE=str(tmp_path / "nope.pem"))
    assert "PEM bundle" in str(caught.value)
