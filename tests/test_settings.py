"""Settings: defaults, environment parsing, and one-line errors that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from lms.settings import Settings, SettingsError, load_settings

ENV_NAMES = [name.upper() for name in Settings.model_fields]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No LMS variable from the outer environment, and no `.env` unless a test writes one."""
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_defaults() -> None:
    settings = load_settings()
    assert settings.pubsub_emulator_host is None
    assert settings.pubsub_project == "lms"
    assert settings.pubsub_topic == "service-logs"
    assert settings.pubsub_subscription == "lms-monitor"
    assert settings.ack_deadline == 60
    assert (settings.mysql_host, settings.mysql_port) == ("127.0.0.1", 3306)
    assert (settings.mysql_user, settings.mysql_password) == ("root", "")
    assert settings.mysql_database == "lms"
    assert settings.batchsize == 5000
    assert settings.flushinterval == 60.0
    assert settings.duration is None
    assert settings.topic_path == "projects/lms/topics/service-logs"
    assert settings.subscription_path == "projects/lms/subscriptions/lms-monitor"


def test_max_outstanding_defaults_to_twice_batchsize() -> None:
    assert load_settings().max_outstanding == 10_000
    assert load_settings().outstanding_limit == 10_000
    assert load_settings(batchsize=7).outstanding_limit == 14


def test_byte_bounds_default_to_python_pubsubs_flow_control_and_16_mib_batches() -> None:
    settings = load_settings()
    assert settings.max_outstanding_bytes == 100 << 20
    assert settings.batch_max_bytes == 16 << 20
    equal = load_settings(max_outstanding_bytes=4096, batch_max_bytes=4096)
    assert equal.max_outstanding_bytes == equal.batch_max_bytes == 4096


def test_max_outstanding_default_follows_batchsize_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BATCHSIZE", "250")
    assert load_settings().outstanding_limit == 500


def test_environment_is_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "PUBSUB_EMULATOR_HOST": "localhost:8085",
        "PUBSUB_PROJECT": "acme",
        "PUBSUB_TOPIC": "logs-in",
        "PUBSUB_SUBSCRIPTION": "logs-sub",
        "ACK_DEADLINE": "120",
        "MYSQL_HOST": "db",
        "MYSQL_PORT": "3307",
        "MYSQL_USER": "lms",
        "MYSQL_PASSWORD": "s3cret",
        "MYSQL_DATABASE": "lms_prod_2",
        "DB_TIMEOUT": "2.5",
        "BATCHSIZE": "100",
        "FLUSHINTERVAL": "5",
        "MAX_OUTSTANDING": "1000",
        "DURATION": "30",
        "LOG_LEVEL": "debug",
        "LOG_FORMAT": "json",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.pubsub_emulator_host == "localhost:8085"
    assert settings.topic_path == "projects/acme/topics/logs-in"
    assert settings.subscription_path == "projects/acme/subscriptions/logs-sub"
    assert settings.ack_deadline == 120
    assert (settings.mysql_host, settings.mysql_port) == ("db", 3307)
    assert (settings.mysql_user, settings.mysql_password) == ("lms", "s3cret")
    assert settings.mysql_database == "lms_prod_2"
    assert settings.db_timeout == 2.5
    assert settings.batchsize == 100
    assert settings.flushinterval == 5.0
    assert settings.outstanding_limit == 1000
    assert settings.duration == 30.0
    assert (settings.log_level, settings.log_format) == ("debug", "json")


def test_variable_names_are_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("batchsize", "42")
    assert load_settings().batchsize == 42


@pytest.mark.parametrize(("raw", "expected"), [("0.5", 0.5), ("0.05", 0.05), ("2.25", 2.25)])
def test_fractional_flushinterval(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: float
) -> None:
    monkeypatch.setenv("FLUSHINTERVAL", raw)
    assert load_settings().flushinterval == expected


def test_max_outstanding_equal_to_batchsize_is_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCHSIZE", "100")
    monkeypatch.setenv("MAX_OUTSTANDING", "100")
    assert load_settings().outstanding_limit == 100


def test_dotenv_file_is_read_and_the_environment_wins(
    monkeypatch: pytest.MonkeyPatch, clean_environment: Path
) -> None:
    (clean_environment / ".env").write_text("BATCHSIZE=7\nFLUSHINTERVAL=0.25\n", encoding="utf-8")
    settings = load_settings()
    assert (settings.batchsize, settings.flushinterval) == (7, 0.25)
    monkeypatch.setenv("BATCHSIZE", "9")
    assert load_settings().batchsize == 9


def test_max_future_skew_becomes_the_record_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().record_rules.max_future_skew == 600
    monkeypatch.setenv("MAX_FUTURE_SKEW", "3600")
    assert load_settings().record_rules.max_future_skew == 3600


def test_keyword_overrides_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCHSIZE", "9")
    assert load_settings(batchsize=3).batchsize == 3


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"BATCHSIZE": "abc"}, "BATCHSIZE"),
        ({"BATCHSIZE": "0"}, "BATCHSIZE"),
        ({"BATCHSIZE": "100001"}, "BATCHSIZE"),
        ({"BATCHSIZE": "1.5"}, "BATCHSIZE"),
        ({"FLUSHINTERVAL": "0"}, "FLUSHINTERVAL"),
        ({"FLUSHINTERVAL": "-1"}, "FLUSHINTERVAL"),
        ({"FLUSHINTERVAL": "soon"}, "FLUSHINTERVAL"),
        ({"BATCHSIZE": "100", "MAX_OUTSTANDING": "99"}, "MAX_OUTSTANDING"),
        ({"MAX_OUTSTANDING": "4999"}, "MAX_OUTSTANDING"),  # below the default BATCHSIZE
        ({"MAX_OUTSTANDING": "0"}, "MAX_OUTSTANDING"),
        ({"MAX_OUTSTANDING_BYTES": "2000", "BATCH_MAX_BYTES": "3000"}, "MAX_OUTSTANDING_BYTES"),
        ({"MAX_OUTSTANDING_BYTES": "1000000"}, "MAX_OUTSTANDING_BYTES"),  # below the default
        ({"MAX_OUTSTANDING_BYTES": "100"}, "MAX_OUTSTANDING_BYTES"),
        ({"BATCH_MAX_BYTES": "0"}, "BATCH_MAX_BYTES"),
        ({"MYSQL_DATABASE": "lms-prod"}, "MYSQL_DATABASE"),
        ({"MYSQL_DATABASE": "lms;drop"}, "MYSQL_DATABASE"),
        ({"MYSQL_DATABASE": "a`b"}, "MYSQL_DATABASE"),
        ({"MYSQL_DATABASE": "lms db"}, "MYSQL_DATABASE"),
        ({"MYSQL_DATABASE": ""}, "MYSQL_DATABASE"),
        ({"MYSQL_DATABASE": "x" * 65}, "MYSQL_DATABASE"),
        ({"MYSQL_PORT": "70000"}, "MYSQL_PORT"),
        ({"ACK_DEADLINE": "5"}, "ACK_DEADLINE"),
        ({"DB_TIMEOUT": "0"}, "DB_TIMEOUT"),
        ({"DURATION": "-3"}, "DURATION"),
        ({"MAX_FUTURE_SKEW": "-1"}, "MAX_FUTURE_SKEW"),
        ({"MAX_FUTURE_SKEW": "1e12"}, "MAX_FUTURE_SKEW"),
        ({"PUBSUB_TOPIC": "ab"}, "PUBSUB_TOPIC"),
        ({"LOG_LEVEL": "verbose"}, "LOG_LEVEL"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
        ({"API_QUERY_TIMEOUT": "3601"}, "API_QUERY_TIMEOUT"),
        ({"API_MAX_BUCKETS": "0"}, "API_MAX_BUCKETS"),
        ({"API_HEADER_TIMEOUT": "0"}, "API_HEADER_TIMEOUT"),
        ({"API_KEEPALIVE_TIMEOUT": "-1"}, "API_KEEPALIVE_TIMEOUT"),
        ({"API_LIMIT_CONCURRENCY": "0"}, "API_LIMIT_CONCURRENCY"),
        ({"INGEST_BODY_TIMEOUT": "0"}, "INGEST_BODY_TIMEOUT"),
    ],
)
def test_invalid_value_raises_settings_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], variable: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert variable in message
    assert "\n" not in message


def test_every_bad_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCHSIZE", "abc")
    monkeypatch.setenv("FLUSHINTERVAL", "0")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "BATCHSIZE" in str(caught.value)
    assert "FLUSHINTERVAL" in str(caught.value)


@pytest.mark.parametrize("value", ["0.0004999", "0.0009", "0", "-0.5"])
def test_a_query_timeout_the_server_would_round_to_no_limit_is_refused(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """MariaDB's max_statement_time (3 decimals) and MySQL's max_execution_time (whole ms)
    both take 0 as "no limit": a timeout under a millisecond must not silently disable it."""
    monkeypatch.setenv("API_QUERY_TIMEOUT", value)
    with pytest.raises(SettingsError, match=r"API_QUERY_TIMEOUT=.*at least 0\.001 seconds"):
        load_settings(_env_file=None)


def test_the_smallest_query_timeout_is_one_millisecond(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_QUERY_TIMEOUT", "0.001")
    assert load_settings(_env_file=None).api_query_timeout == 0.001


def test_invalid_keyword_override_is_named_too() -> None:
    with pytest.raises(SettingsError, match="BATCHSIZE"):
        load_settings(batchsize="abc")


def test_valid_settings_raise_nothing_and_are_not_a_settings_error() -> None:
    # guards the tests above: the clean environment alone must be valid
    assert isinstance(load_settings(), Settings)


@pytest.mark.parametrize("name", ENV_NAMES)
def test_every_setting_is_documented_in_the_readme(name: str) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    assert f"| `{name}` |" in readme, f"README's settings table lacks {name}"
