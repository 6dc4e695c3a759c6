"""Service settings from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from flywheel.logging import redact, redact_url
from flywheel.settings import Settings


def _clear(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "MONGODB_URL",
        "ELASTICSEARCH_URL",
        "ES_COLLECTION_NAME",
        "NMP_BASE_URL",
        "FLYWHEEL_DATA_DIR",
        "REDIS_URL",
    ):
        monkeypatch.delenv(name, raising=False)


def _from_dotenv(tmp_path: Path, text: str) -> Settings:
    """Settings read from a ``.env`` file holding ``text`` (written under ``tmp_path``)."""
    env_file = tmp_path / ".env"
    env_file.write_text(text)
    return Settings(_env_file=env_file)  # type: ignore[call-arg]


def test_unset_urls_select_sqlite_under_the_data_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _clear(monkeypatch)
    monkeypatch.setenv("FLYWHEEL_DATA_DIR", str(tmp_path))
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.state_store_url == f"sqlite:///{tmp_path / 'state.db'}"
    assert settings.log_store_url == f"sqlite:///{tmp_path / 'logs.db'}"
    assert settings.platform_kind == "local"
    assert settings.es_collection_name == "flywheel"


def test_service_urls_come_from_the_documented_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    _clear(monkeypatch)
    monkeypatch.setenv("MONGODB_URL", "mongodb://u:pw@db:27017/fw")
    monkeypatch.setenv("ELASTICSEARCH_URL", "https://es:9200")
    monkeypatch.setenv("ES_COLLECTION_NAME", "prod-logs")
    monkeypatch.setenv("NMP_BASE_URL", "http://nemo.test")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.state_store_url == "mongodb://u:pw@db:27017/fw"
    assert settings.log_store_url == "https://es:9200"
    assert settings.es_collection_name == "prod-logs"
    assert settings.platform_kind == "nemo"
    assert "pw" not in repr(settings)


def test_a_dotenv_file_configures_the_service(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _clear(monkeypatch)
    monkeypatch.delenv("FLYWHEEL_AUTH_ENABLED", raising=False)
    settings = _from_dotenv(
        tmp_path,
        "# deployment settings\n"
        "MONGODB_URL=mongodb://u:pw@db:27017/fw\n"
        "ES_COLLECTION_NAME=from-dotenv\n"
        f"FLYWHEEL_DATA_DIR={tmp_path / 'data'}\n"
        "FLYWHEEL_AUTH_ENABLED=false\n"
        "SOMETHING_ELSE=ignored\n",
    )

    assert settings.state_store_url == "mongodb://u:pw@db:27017/fw"
    assert settings.es_collection_name == "from-dotenv"
    assert settings.data_dir == tmp_path / "data"
    assert settings.auth_enabled is False
    assert settings.log_store_url == f"sqlite:///{tmp_path / 'data' / 'logs.db'}"


def test_the_environment_wins_over_the_dotenv_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _clear(monkeypatch)
    monkeypatch.setenv("ES_COLLECTION_NAME", "from-env")

    settings = _from_dotenv(
        tmp_path, "ES_COLLECTION_NAME=from-dotenv\nREDIS_URL=redis://dotenv:6379/0\n"
    )

    assert settings.es_collection_name == "from-env"
    assert settings.redis_url is not None
    assert settings.redis_url.get_secret_value() == "redis://dotenv:6379/0"


def test_a_bad_value_in_the_dotenv_file_stops_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _clear(monkeypatch)
    with pytest.raises(ValidationError, match="not a valid Elasticsearch index name"):
        _from_dotenv(tmp_path, "ES_COLLECTION_NAME=Not/An/Index\n")


@pytest.mark.parametrize("name", ["Upper", "_x", "a b", "a/b"])
def test_invalid_index_name_stops_start(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    _clear(monkeypatch)
    monkeypatch.setenv("ES_COLLECTION_NAME", name)
    with pytest.raises(ValidationError, match="not a valid Elasticsearch index name"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_redaction_masks_secret_keys_and_url_passwords() -> None:
    assert redact_url("mongodb://user:s3cret@host/db") == "mongodb://user:***@host/db"
    masked = redact(
        {
            "api_key": "sk-1",
            "nested": {"Authorization": "Bearer x"},
            "url": "redis://:pw@h:6379/0",
            "name": "ok",
        }
    )
    assert masked == {
        "api_key": "***",
        "nested": {"Authorization": "***"},
        "url": "redis://:***@h:6379/0",
        "name": "ok",
    }
