"""Elasticsearch and Redis behind a private CA, reached through the settings the app uses.

Each server speaks plain TCP on loopback; a TLS proxy with a certificate from the test's
private CA sits in front, so verification happens for real in the clients.
"""

from __future__ import annotations

import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from pydantic import ValidationError

from flywheel.errors import StoreUnavailable
from flywheel.settings import Settings
from flywheel.stores.base import LogStore
from flywheel.stores.registry import open_log_store, open_state_store
from flywheel.workflow.celery_app import broker_ssl, create_celery_app
from flywheel.workflow.options import WorkflowOptions
from flywheel.workflow.runtime import open_capacity
from tests.security.tls_support import PrivateCA, TlsProxy
from tests.support.es_server import start_es_server

REDIS = ("127.0.0.1", 6379)  # the shared test Redis (plain TCP)


@pytest.fixture(scope="module")
def es_behind_tls(tmp_path_factory: pytest.TempPathFactory, private_ca: PrivateCA) -> Iterator[str]:
    """An ``https://`` URL whose TLS ends at a proxy in front of noida-db's Elasticsearch."""
    url, stop = start_es_server(tmp_path_factory.mktemp("es"))
    target = urlsplit(url)
    try:
        with TlsProxy((str(target.hostname), int(target.port or 9200)), private_ca) as proxy:
            yield f"https://127.0.0.1:{proxy.port}"
    finally:
        stop()


def _log_store(settings: Settings) -> LogStore:
    return open_log_store(
        settings.log_store_url,
        index=f"flywheel-tls-{uuid.uuid4().hex[:8]}",
        verify_certs=settings.es_verify_certs,
    )


def test_elasticsearch_verifies_against_es_ca_certs(
    es_behind_tls: str, private_ca: PrivateCA
) -> None:
    settings = Settings(ELASTICSEARCH_URL=es_behind_tls, ES_CA_CERTS=str(private_ca.ca_file))
    store = _log_store(settings)
    try:
        store.ping()
        assert store.count("acme", "tls-workload") == 0
    finally:
        store.close()


def test_elasticsearch_without_the_ca_refuses_the_certificate(es_behind_tls: str) -> None:
    store = _log_store(Settings(ELASTICSEARCH_URL=es_behind_tls))
    try:
        with pytest.raises(StoreUnavailable) as caught:
            store.ping()
    finally:
        store.close()
    assert "certificate verify failed" in str(caught.value).lower()
    assert es_behind_tls in str(caught.value)


@pytest.fixture(scope="module")
def redis_behind_tls(private_ca: PrivateCA) -> Iterator[str]:
    """A ``rediss://`` URL whose TLS ends at a proxy in front of the shared Redis."""
    with TlsProxy(REDIS, private_ca) as proxy:
        yield f"rediss://127.0.0.1:{proxy.port}/0"


def test_a_bare_rediss_url_verifies_certificates(redis_behind_tls: str) -> None:
    settings = Settings(REDIS_URL=redis_behind_tls)
    assert settings.redis_url is not None
    url = settings.redis_url.get_secret_value()
    assert "ssl_cert_reqs=required" in url
    assert broker_ssl(url) == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    # Our own Redis client refuses the private CA's certificate without REDIS_CA_CERTS.
    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    try:
        with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
            client.ping()
    finally:
        client.close()


def test_redis_ca_certs_reaches_the_gpu_lease_table_and_the_celery_broker(
    redis_behind_tls: str, private_ca: PrivateCA
) -> None:
    settings = Settings(REDIS_URL=redis_behind_tls, REDIS_CA_CERTS=str(private_ca.ca_file))
    options = WorkflowOptions(queue_prefix=f"tls-{uuid.uuid4().hex[:8]}.")

    capacity = open_capacity(settings, options)
    owner = f"job-{uuid.uuid4().hex[:8]}"
    try:
        assert capacity.acquire(owner, 1, 1).granted
        assert capacity.leases() == {owner: 1}
    finally:
        capacity.release(owner)
    assert capacity.leases() == {}

    app = create_celery_app(settings, options)
    assert app.conf.broker_use_ssl == {
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
        "ssl_ca_certs": str(private_ca.ca_file),
    }
    with app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1)
        assert connection.default_channel.client.ping()


def test_a_url_may_opt_out_of_verification_explicitly(redis_behind_tls: str) -> None:
    settings = Settings(REDIS_URL=f"{redis_behind_tls}?ssl_cert_reqs=none")
    assert settings.redis_url is not None
    url = settings.redis_url.get_secret_value()
    assert url.count("ssl_cert_reqs") == 1
    assert broker_ssl(url) == {"ssl_cert_reqs": ssl.CERT_NONE}


def test_a_ca_for_plain_redis_is_refused_at_startup(private_ca: PrivateCA) -> None:
    with pytest.raises(ValidationError, match="rediss://"):
        Settings(REDIS_URL="redis://127.0.0.1:6379/0", REDIS_CA_CERTS=str(private_ca.ca_file))


def test_mongodb_ca_file_becomes_tls_options_of_the_url(private_ca: PrivateCA) -> None:
    settings = Settings(
        MONGODB_URL="mongodb://u:p@db.internal:27017/flywheel?authSource=admin",
        MONGODB_CA_FILE=str(private_ca.ca_file),
    )
    assert settings.state_store_url == (
        "mongodb://u:p@db.internal:27017/flywheel?authSource=admin"
        f"&tls=true&tlsCAFile={str(private_ca.ca_file).replace('/', '%2F')}"
    )
    # A URL that names its own CA file keeps it.
    own = Settings(
        MONGODB_URL="mongodb://db.internal/?tls=true&tlsCAFile=/etc/own.pem",
        MONGODB_CA_FILE=str(private_ca.ca_file),
    )
    assert own.state_store_url == "mongodb://db.internal/?tls=true&tlsCAFile=/etc/own.pem"


def test_es_ca_certs_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="ES_CA_CERTS"):
        Settings(ES_CA_CERTS=str(tmp_path / "missing.pem"))


def _through(proxy: TlsProxy, url: str, **query: str) -> str:
    """``url`` (credentials and database kept) pointed at ``proxy``, with ``query``."""
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@" if credentials else ""
    options = "&".join(f"{k}={v}" for k, v in query.items())
    return urlunsplit(parts._replace(netloc=f"{netloc}127.0.0.1:{proxy.port}", query=options))


def test_mongodb_verifies_against_mongodb_ca_file(mongo_db_url: str, private_ca: PrivateCA) -> None:
    target = urlsplit(mongo_db_url)
    with TlsProxy((str(target.hostname), int(target.port or 27017)), private_ca) as proxy:
        url = _through(proxy, mongo_db_url, directConnection="true")
        settings = Settings(MONGODB_URL=url, MONGODB_CA_FILE=str(private_ca.ca_file))
        store = open_state_store(settings.state_store_url)
        try:
            store.ping()
            assert store.list_keys() == []
        finally:
            store.close()

        # TLS asked for in the URL alone, without the CA: the certificate is refused.
        refused = _through(
            proxy,
            mongo_db_url,
            directConnection="true",
            tls="true",
            serverSelectionTimeoutMS="2000",
        )
        with pytest.raises(StoreUnavailable) as caught:
            open_state_store(Settings(MONGODB_URL=refused).state_store_url)
        assert "certificate verify failed" in str(caught.value.__cause__).lower()
