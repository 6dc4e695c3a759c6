"""Fixtures for the TLS tests: one private CA per test module."""

from __future__ import annotations

import pytest

from tests.security.tls_support import PrivateCA, make_private_ca


@pytest.fixture(scope="module")
def private_ca(tmp_path_factory: pytest.TempPathFactory) -> PrivateCA:
    """A throwaway CA and a 127.0.0.1 certificate signed by it."""
    return make_private_ca(tmp_path_factory.mktemp("ca"))
