"""Open a store from its URL: the scheme picks the adapter, which is imported only if chosen.

``sqlite:///path`` → SQLite; ``mongodb://`` / ``mongodb+srv://`` → MongoDB (state);
``http://`` / ``https://`` → Elasticsearch (logs).

TLS options travel in the URL: MongoDB reads its own (``tls=true&tlsCAFile=...``); for
Elasticsearch, ``?ca_certs=/path/ca.pem`` (what ``ES_CA_CERTS`` adds) is taken off the URL
here and handed to the client as its CA bundle.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flywheel.errors import ConfigError
from flywheel.stores.base import LogStore, StateStore

_STATE_BUILDERS: dict[str, Callable[[str], StateStore]] = {}
_LOG_BUILDERS: dict[str, Callable[[str, str, bool], LogStore]] = {}


def _state(*schemes: str) -> Callable[[Callable[[str], StateStore]], Callable[[str], StateStore]]:
    def add(fn: Callable[[str], StateStore]) -> Callable[[str], StateStore]:
        _STATE_BUILDERS.update(dict.fromkeys(schemes, fn))
        return fn

    return add


def _logs(
    *schemes: str,
) -> Callable[[Callable[[str, str, bool], LogStore]], Callable[[str, str, bool], LogStore]]:
    def add(fn: Callable[[str, str, bool], LogStore]) -> Callable[[str, str, bool], LogStore]:
        _LOG_BUILDERS.update(dict.fromkeys(schemes, fn))
        return fn

    return add


@_state("sqlite")
def _sqlite_state(url: str) -> StateStore:
    from flywheel.stores.state_sqlite import SqliteStateStore

    return SqliteStateStore.from_url(url)


@_state("mongodb", "mongodb+srv")
def _mongo_state(url: str) -> StateStore:
    from flywheel.stores.state_mongo import MongoStateStore

    return MongoStateStore.from_url(url)


@_logs("sqlite")
def _sqlite_logs(url: str, index: str, verify_certs: bool) -> LogStore:
    from flywheel.stores.logs_sqlite import SqliteLogStore

    return SqliteLogStore.from_url(url)


@_logs("http", "https")
def _elastic_logs(url: str, index: str, verify_certs: bool) -> LogStore:
    from flywheel.stores.logs_elastic import ElasticLogStore

    url, ca_certs = _pop_query(url, "ca_certs")
    return ElasticLogStore.from_url(url, index=index, verify_certs=verify_certs, ca_certs=ca_certs)


def _pop_query(url: str, name: str) -> tuple[str, str | None]:
    """Split option ``name`` off ``url``'s query (our option, not the server's)."""
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    values = [v for k, v in pairs if k == name]
    if not values:
        return url, None
    rest = urlencode([(k, v) for k, v in pairs if k != name])
    return urlunsplit(parts._replace(query=rest)), values[-1] or None


def _scheme(url: str) -> str:
    return urlsplit(url).scheme.lower()


def open_state_store(url: str) -> StateStore:
    """Open the state store named by ``url``.

    Raises:
        ConfigError: the scheme is not supported.
    """
    scheme = _scheme(url)
    if scheme not in _STATE_BUILDERS:
        raise ConfigError(
            f"state store URL scheme {scheme!r} is not supported; use one of "
            f"{sorted(_STATE_BUILDERS)} (MONGODB_URL, or leave it unset for SQLite)"
        )
    return _STATE_BUILDERS[scheme](url)


def open_log_store(url: str, *, index: str = "flywheel", verify_certs: bool = True) -> LogStore:
    """Open the log store named by ``url`` (``index`` is the Elasticsearch index name).

    Raises:
        ConfigError: the scheme is not supported.
    """
    scheme = _scheme(url)
    if scheme not in _LOG_BUILDERS:
        raise ConfigError(
            f"log store URL scheme {scheme!r} is not supported; use one of "
            f"{sorted(_LOG_BUILDERS)} (ELASTICSEARCH_URL, or leave it unset for SQLite)"
        )
    return _LOG_BUILDERS[scheme](url, index, verify_certs)
