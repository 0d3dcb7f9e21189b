"""AuthBridgeSettings: every deployment setting from AUTHBRIDGE_* variables, secrets never shown.

Real environment variables (monkeypatch), real .env files and secret directories on disk,
and the issuer they configure started against a real SQLite file.
"""

from __future__ import annotations

import os
import traceback
from pathlib import Path
from typing import Any

import pytest

from authbridge import AppIssuer, ConfigurationError
from authbridge.client import AccountPolicy, LoginSettings
from authbridge.issuer._kek import kek_id, new_kek
from authbridge.settings import STORE_VARIABLE, AuthBridgeSettings, _variable, redact_url
from authbridge.store import SQLStore

KEK_A, KEK_B = new_kek(), new_kek()
PASSWORD = "Pg-s3cret-Pa55"
REDIS_PASSWORD = "r3dis-Pa55-w0rd"
ISSUER = "https://api.example.com"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No setting from the developer's or CI's environment, and a working directory of our own."""
    for name in AuthBridgeSettings.model_fields:
        monkeypatch.delenv(_variable(name), raising=False)
        monkeypatch.delenv(_variable(name).lower(), raising=False)
    monkeypatch.chdir(tmp_path)


def refusal(**env: str) -> ConfigurationError:
    for name, value in env.items():
        os.environ[name] = value
    try:
        with pytest.raises(ConfigurationError) as failed:
            AuthBridgeSettings()
    finally:
        for name in env:
            del os.environ[name]
    return failed.value


def full_text(error: BaseException) -> str:
    return "".join(traceback.format_exception(error)) + repr(error) + str(error)


# --- reading the environment ------------------------------------------------------------------


def test_defaults_are_the_products_defaults() -> None:
    settings = AuthBridgeSettings()
    issuer = AppIssuer(ISSUER)
    login = LoginSettings()
    assert settings.issuer is None
    assert settings.store_url == "sqlite+aiosqlite:///authbridge.db" == issuer.store
    assert settings.redis_url is None
    assert settings.key_encryption_key is None
    assert settings.migrate is issuer.migrate is True
    for name in (
        "access_token_ttl",
        "refresh_token_idle_ttl",
        "refresh_token_ttl",
        "refresh_reuse_interval",
        "authorization_code_ttl",
        "key_rotation_interval",
        "jwks_max_age",
        "password_failures_per_account",
        "password_attempts_per_address",
        "password_window",
        "max_concurrent_hashes",
        "max_waiting_hashes",
        "signing_algorithm",
    ):
        assert getattr(settings, name) == getattr(issuer, name), name
    for name in (
        "providers",
        "local_password",
        "transaction_ttl",
        "session_ttl",
        "session_idle_ttl",
        "session_cookie",
        "same_site",
        "after_login",
        "after_logout",
        "title",
    ):
        assert getattr(settings, f"login_{name}") == getattr(login, name), name
    assert settings.login_create_accounts is login.accounts.create_accounts
    assert settings.login_link_by_email is login.accounts.link_by_email


SAMPLES: dict[str, tuple[str, Any]] = {
    "issuer": (ISSUER, ISSUER),
    "store_url": (
        "postgresql+asyncpg://ab@db.internal/ab",
        "postgresql+asyncpg://ab@db.internal/ab",
    ),
    "store_pool_size": ("25", 25),
    "redis_url": ("redis://cache.internal:6379/2", "redis://cache.internal:6379/2"),
    "redis_prefix": ("shop:", "shop:"),
    "migrate": ("false", False),
    "development": ("true", True),
    "signing_algorithm": ("EdDSA", "EdDSA"),
    "audience": ("https://items.example.com", "https://items.example.com"),
    "resources": (
        "https://reports.example.com, https://billing.example.com",
        ("https://reports.example.com", "https://billing.example.com"),
    ),
    "access_token_ttl": ("300", 300.0),
    "refresh_token_idle_ttl": ("86400", 86400.0),
    "refresh_token_ttl": ("604800", 604800.0),
    "refresh_reuse_interval": ("0", 0.0),
    "authorization_code_ttl": ("30", 30.0),
    "key_rotation_interval": ("0", 0.0),
    "jwks_max_age": ("600", 600.0),
    "password_failures_per_account": ("5", 5),
    "password_attempts_per_address": ("50", 50),
    "password_window": ("60", 60.0),
    "max_concurrent_hashes": ("4", 4),
    "max_waiting_hashes": ("0", 0),
    "login_providers": ("github,google", ("github", "google")),
    "login_local_password": ("no", False),
    "login_create_accounts": ("0", False),
    "login_link_by_email": ("1", True),
    "login_transaction_ttl": ("120", 120.0),
    "login_session_ttl": ("7200", 7200.0),
    "login_session_idle_ttl": ("600", 600.0),
    "login_session_cookie": ("shop_session", "shop_session"),
    "login_same_site": ("strict", "strict"),
    "login_after_login": ("/home", "/home"),
    "login_after_logout": ("/bye", "/bye"),
    "login_title": ("Log in to the shop", "Log in to the shop"),
}


def test_every_setting_but_the_secret_has_a_sample() -> None:
    assert set(SAMPLES) | {"key_encryption_key"} == set(AuthBridgeSettings.model_fields)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_each_setting_is_read_from_its_variable(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    raw, expected = SAMPLES[name]
    variable = _variable(name)
    assert variable == (STORE_VARIABLE if name == "store_url" else f"AUTHBRIDGE_{name.upper()}")
    monkeypatch.setenv(variable, raw)
    assert getattr(AuthBridgeSettings(), name) == expected
    monkeypatch.delenv(variable)
    monkeypatch.setenv(variable.lower(), raw)  # names are not case-sensitive
    assert getattr(AuthBridgeSettings(), name) == expected


def test_the_store_is_the_command_lines_variable_and_nothing_else(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STORE_URL", "postgresql+asyncpg://wrong@h/db")
    assert AuthBridgeSettings().store_url == "sqlite+aiosqlite:///authbridge.db"
    monkeypatch.setenv(STORE_VARIABLE, "sqlite+aiosqlite:///shared.db")
    assert AuthBridgeSettings().store_url == "sqlite+aiosqlite:///shared.db"


@pytest.mark.parametrize("name", ["AUTHBRIDGE_STORE_URL", "authbridge_store_url"])
def test_the_field_name_as_a_variable_is_refused_not_ignored(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `authbridge db upgrade` reads AUTHBRIDGE_STORE: a second name would split app and CLI.
    monkeypatch.setenv(name, f"postgresql+asyncpg://ab:{PASSWORD}@db/ab")
    with pytest.raises(ConfigurationError) as failed:
        AuthBridgeSettings()
    assert (
        f"{name} (in the environment) is not a setting: the store's URL is AUTHBRIDGE_STORE"
    ) in str(failed.value)
    assert PASSWORD not in full_text(failed.value)


def test_keyword_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTHBRIDGE_ACCESS_TOKEN_TTL", "300")
    monkeypatch.setenv(STORE_VARIABLE, "sqlite+aiosqlite:///env.db")
    settings = AuthBridgeSettings(access_token_ttl=60, store_url="sqlite+aiosqlite:///kw.db")
    assert settings.access_token_ttl == 60.0
    assert settings.store_url == "sqlite+aiosqlite:///kw.db"


def test_an_empty_variable_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AUTHBRIDGE_DEVELOPMENT", "AUTHBRIDGE_ACCESS_TOKEN_TTL", STORE_VARIABLE):
        monkeypatch.setenv(name, "")
    monkeypatch.setenv("AUTHBRIDGE_KEY_ENCRYPTION_KEY", "")
    settings = AuthBridgeSettings()
    assert settings.development is None
    assert settings.access_token_ttl == 600.0
    assert settings.store_url == "sqlite+aiosqlite:///authbridge.db"
    assert settings.key_encryption_key is None


def test_the_settings_are_frozen() -> None:
    settings = AuthBridgeSettings()
    with pytest.raises(Exception, match="frozen"):
        settings.issuer = ISSUER  # type: ignore[misc]


# --- the key-encryption keys ------------------------------------------------------------------


def test_the_kek_variable_means_what_it_means_to_app_issuer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AUTHBRIDGE_KEY_ENCRYPTION_KEY", f" {KEK_A} , {KEK_B},")
    from_settings = AuthBridgeSettings(issuer=ISSUER).app_issuer()
    from_environment = AppIssuer(ISSUER)  # reads the same variable itself
    assert from_settings.key_encryption_keys == from_environment.key_encryption_keys
    assert from_settings.key_encryption_keys == (KEK_A, KEK_B)
    assert AuthBridgeSettings().key_encryption_key_ids == (
        kek_id(_raw(KEK_A)),
        kek_id(_raw(KEK_B)),
    )


def _raw(kek: str) -> bytes:
    import base64  # noqa: PLC0415

    return base64.urlsafe_b64decode(kek + "=")


def test_without_a_kek_the_issuer_gets_none_even_if_the_environment_changes_later(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = AuthBridgeSettings(issuer=ISSUER)
    monkeypatch.setenv("AUTHBRIDGE_KEY_ENCRYPTION_KEY", KEK_A)
    assert settings.app_issuer().key_encryption_keys == ()


@pytest.mark.parametrize(
    "value",
    [
        "not-a-key",
        KEK_A[:-2],  # 31 bytes
        KEK_A + "AAAA",  # 35 bytes
        f"{KEK_A},{KEK_A[:20]}",  # the second one is short
        "é" * 43,
    ],
    ids=["not-base64url", "31-bytes", "35-bytes", "second-short", "not-ascii"],
)
def test_a_malformed_kek_is_refused_without_repeating_it(value: str) -> None:
    error = refusal(AUTHBRIDGE_KEY_ENCRYPTION_KEY=value)
    text = full_text(error)
    assert "AUTHBRIDGE_KEY_ENCRYPTION_KEY" in str(error)
    assert error.reason == "invalid_settings"
    for part in value.split(","):
        assert part not in text
    assert ("#2" in str(error)) == ("," in value)


# --- secrets never shown -------------------------------------------------------------------


def test_repr_str_and_dumps_hide_the_kek_and_the_url_passwords() -> None:
    settings = AuthBridgeSettings(
        key_encryption_key=f"{KEK_A},{KEK_B}",
        store_url=f"postgresql+asyncpg://ab:{PASSWORD}@db.internal:5432/ab",
        redis_url=f"rediss://default:{REDIS_PASSWORD}@cache.internal:6380/0",
    )
    shown = [
        repr(settings),
        str(settings),
        str(settings.model_dump()),
        settings.model_dump_json(),
        repr(settings.key_encryption_key),
        str(settings.key_encryption_key),
    ]
    for text in shown:
        for secret in (KEK_A, KEK_B, PASSWORD, REDIS_PASSWORD):
            assert secret not in text
    assert "postgresql+asyncpg://ab:***@db.internal:5432/ab" in repr(settings)
    assert settings.model_dump()["redis_url"] == "rediss://default:***@cache.internal:6380/0"
    # the values themselves are intact for the app
    assert settings.store_url.endswith(f":{PASSWORD}@db.internal:5432/ab")
    assert settings.key_encryption_key is not None
    assert settings.key_encryption_key.get_secret_value() == f"{KEK_A},{KEK_B}"


def test_redact_url() -> None:
    assert redact_url("redis://:pw@h:6379/0") == "redis://:***@h:6379/0"
    assert redact_url("postgresql+asyncpg://u@h/db") == "postgresql+asyncpg://u@h/db"
    assert redact_url("http://[::1") == "<unparsable URL>"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"redis://h:6379/0?password={PASSWORD}", "redis://h:6379/0?password=***"),
        (
            f"unix:///run/r.sock?db=1&PassWord={PASSWORD}&x=1",
            "unix:///run/r.sock?db=1&PassWord=***&x=1",
        ),
        (
            f"postgresql+asyncpg://u:{PASSWORD}@h/db?pass%77ord={PASSWORD}",
            "postgresql+asyncpg://u:***@h/db?pass%77ord=***",
        ),
        (f"redis://h/0?password=ab#{PASSWORD}", "redis://h/0?password=***#***"),
        (f"redis://a@b:{PASSWORD}@h/0", "redis://a@b:***@h/0"),
        ("redis://h/0?passwords=1&db=2", "redis://h/0?passwords=1&db=2"),
        ("sqlite+aiosqlite:///x.db?mode=ro", "sqlite+aiosqlite:///x.db?mode=ro"),
    ],
)
def test_redact_url_masks_every_password_and_keeps_the_rest(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    from authbridge.cli._stores import redacted  # noqa: PLC0415

    assert redacted(url) == shown  # one rule for the command line's messages


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({STORE_VARIABLE: f"mysql://ab:{PASSWORD}@db/ab"}, STORE_VARIABLE),
        ({STORE_VARIABLE: f"postgresql+psycopg2://ab:{PASSWORD}@db/ab"}, STORE_VARIABLE),
        ({"AUTHBRIDGE_REDIS_URL": f"http://:{REDIS_PASSWORD}@cache"}, "AUTHBRIDGE_REDIS_URL"),
        ({"AUTHBRIDGE_REDIS_URL": f"redis://:{REDIS_PASSWORD}@"}, "AUTHBRIDGE_REDIS_URL"),
        ({"AUTHBRIDGE_REDIS_URL": f"redis://:{REDIS_PASSWORD}@h:99999"}, "AUTHBRIDGE_REDIS_URL"),
        ({"AUTHBRIDGE_ISSUER": f"ftp://u:{PASSWORD}@api.example.com"}, "AUTHBRIDGE_ISSUER"),
        ({"AUTHBRIDGE_ISSUER": f"https://api.example.com/?{PASSWORD}"}, "AUTHBRIDGE_ISSUER"),
        ({"AUTHBRIDGE_AUDIENCE": f"{PASSWORD}"}, "AUTHBRIDGE_AUDIENCE"),
        ({"AUTHBRIDGE_AUDIENCE": f"https://api.example.com/#{PASSWORD}"}, "AUTHBRIDGE_AUDIENCE"),
        ({"AUTHBRIDGE_RESOURCES": f"https://a.example.com,{PASSWORD}"}, "AUTHBRIDGE_RESOURCES"),
        ({"AUTHBRIDGE_ACCESS_TOKEN_TTL": PASSWORD}, "AUTHBRIDGE_ACCESS_TOKEN_TTL"),
        ({"AUTHBRIDGE_ACCESS_TOKEN_TTL": "0"}, "AUTHBRIDGE_ACCESS_TOKEN_TTL"),
        ({"AUTHBRIDGE_ACCESS_TOKEN_TTL": "-5"}, "AUTHBRIDGE_ACCESS_TOKEN_TTL"),
        ({"AUTHBRIDGE_REFRESH_REUSE_INTERVAL": "301"}, "AUTHBRIDGE_REFRESH_REUSE_INTERVAL"),
        ({"AUTHBRIDGE_AUTHORIZATION_CODE_TTL": "601"}, "AUTHBRIDGE_AUTHORIZATION_CODE_TTL"),
        ({"AUTHBRIDGE_KEY_ROTATION_INTERVAL": "7200"}, "AUTHBRIDGE_KEY_ROTATION_INTERVAL"),
        ({"AUTHBRIDGE_PASSWORD_WINDOW": "nan"}, "AUTHBRIDGE_PASSWORD_WINDOW"),
        (
            {"AUTHBRIDGE_PASSWORD_FAILURES_PER_ACCOUNT": "0"},
            "AUTHBRIDGE_PASSWORD_FAILURES_PER_ACCOUNT",
        ),
        ({"AUTHBRIDGE_MAX_CONCURRENT_HASHES": "1.5"}, "AUTHBRIDGE_MAX_CONCURRENT_HASHES"),
        ({"AUTHBRIDGE_STORE_POOL_SIZE": "0"}, "AUTHBRIDGE_STORE_POOL_SIZE"),
        ({"AUTHBRIDGE_MIGRATE": PASSWORD}, "AUTHBRIDGE_MIGRATE"),
        ({"AUTHBRIDGE_DEVELOPMENT": "maybe"}, "AUTHBRIDGE_DEVELOPMENT"),
        ({"AUTHBRIDGE_SIGNING_ALGORITHM": "HS256"}, "AUTHBRIDGE_SIGNING_ALGORITHM"),
        ({"AUTHBRIDGE_LOGIN_SAME_SITE": "none"}, "AUTHBRIDGE_LOGIN_SAME_SITE"),
        ({"AUTHBRIDGE_LOGIN_SESSION_COOKIE": "__Host-x"}, "AUTHBRIDGE_LOGIN_SESSION_COOKIE"),
        ({"AUTHBRIDGE_LOGIN_SESSION_COOKIE": "a b"}, "AUTHBRIDGE_LOGIN_SESSION_COOKIE"),
        ({"AUTHBRIDGE_LOGIN_AFTER_LOGIN": "//evil.example"}, "AUTHBRIDGE_LOGIN_AFTER_LOGIN"),
        (
            {"AUTHBRIDGE_LOGIN_AFTER_LOGOUT": "https://evil.example/"},
            "AUTHBRIDGE_LOGIN_AFTER_LOGOUT",
        ),
        ({"AUTHBRIDGE_LOGIN_SESSION_TTL": "0.5"}, "AUTHBRIDGE_LOGIN_SESSION_TTL"),
        (
            {"AUTHBRIDGE_LOGIN_SESSION_TTL": "60", "AUTHBRIDGE_LOGIN_SESSION_IDLE_TTL": "120"},
            "AUTHBRIDGE_LOGIN_SESSION_IDLE_TTL",
        ),
    ],
)
def test_an_invalid_value_names_its_variable_never_the_value(
    env: dict[str, str], variable: str
) -> None:
    error = refusal(**env)
    assert error.reason == "invalid_settings"
    assert f"{variable}: " in str(error)
    text = full_text(error)
    for secret in (PASSWORD, REDIS_PASSWORD, "//evil.example", "https://evil.example/"):
        assert secret not in text
    assert error.__cause__ is None
    assert error.__suppress_context__


def test_several_invalid_values_are_all_named() -> None:
    error = refusal(
        AUTHBRIDGE_ACCESS_TOKEN_TTL="x",
        AUTHBRIDGE_MIGRATE="x",
        AUTHBRIDGE_KEY_ENCRYPTION_KEY="x",
    )
    for variable in ("ACCESS_TOKEN_TTL", "MIGRATE", "KEY_ENCRYPTION_KEY"):
        assert f"AUTHBRIDGE_{variable}: " in str(error)


def test_an_unknown_keyword_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="access_token_tll: not a setting"):
        AuthBridgeSettings(access_token_tll=5)


# --- files ----------------------------------------------------------------------------------


def test_a_dotenv_file_is_read_only_when_passed(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        f"AUTHBRIDGE_ISSUER={ISSUER}\nAUTHBRIDGE_KEY_ENCRYPTION_KEY={KEK_A}\n"
        "OTHER_APP_SETTING=ignored\n",
        encoding="utf-8",
    )
    assert AuthBridgeSettings().issuer is None  # .env in the working directory: not read
    settings = AuthBridgeSettings(_env_file=tmp_path / ".env")
    assert settings.issuer == ISSUER
    assert settings.app_issuer().key_encryption_keys == (KEK_A,)


def test_the_environment_wins_over_the_dotenv_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "prod.env").write_text("AUTHBRIDGE_ACCESS_TOKEN_TTL=300\n", encoding="utf-8")
    monkeypatch.setenv("AUTHBRIDGE_ACCESS_TOKEN_TTL", "120")
    assert AuthBridgeSettings(_env_file=tmp_path / "prod.env").access_token_ttl == 120.0


def test_a_misspelt_variable_in_a_dotenv_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "DATABASE_URL=sqlite:///app.db\n"  # the app's own: fine
        f"AUTHBRIDGE_STORE_URL=postgresql+asyncpg://ab:{PASSWORD}@db/ab\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigurationError) as failed:
        AuthBridgeSettings(_env_file=tmp_path / ".env")
    assert (
        "AUTHBRIDGE_STORE_URL (in .env) is not a setting: the store's URL is AUTHBRIDGE_STORE"
    ) in str(failed.value)
    assert PASSWORD not in full_text(failed.value)
    (tmp_path / "typo.env").write_text("authbridge_acess_token_ttl=5\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match=r"authbridge_acess_token_ttl \(in typo.env\)"):
        AuthBridgeSettings(_env_file=[tmp_path / "missing.env", tmp_path / "typo.env"])


def test_a_secrets_directory_holds_one_file_per_variable(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "AUTHBRIDGE_KEY_ENCRYPTION_KEY").write_text(f"{KEK_A}\n", encoding="utf-8")
    (secrets / "AUTHBRIDGE_STORE").write_text(
        f"postgresql+asyncpg://ab:{PASSWORD}@db/ab\n", encoding="utf-8"
    )
    settings = AuthBridgeSettings(_secrets_dir=secrets, issuer=ISSUER)
    assert settings.store_url == f"postgresql+asyncpg://ab:{PASSWORD}@db/ab"
    assert settings.app_issuer().key_encryption_keys == (KEK_A,)
    assert PASSWORD not in repr(settings)


# --- what the settings make ---------------------------------------------------------------------


def test_app_issuer_takes_every_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, (raw, _) in SAMPLES.items():
        if not name.startswith(("login_", "redis_")) and name != "store_url":
            monkeypatch.setenv(_variable(name), raw)
    # development mode from the environment is for a loopback issuer only (tested below)
    monkeypatch.setenv("AUTHBRIDGE_DEVELOPMENT", "false")
    settings = AuthBridgeSettings()
    issuer = settings.app_issuer(scopes=["items:read"])
    assert issuer.development is False
    assert issuer.issuer == ISSUER
    assert issuer.scopes == {"items:read": "items:read"}
    assert issuer.audience == "https://items.example.com"
    assert issuer.resources == (
        "https://items.example.com",
        "https://reports.example.com",
        "https://billing.example.com",
    )
    for name in (
        "migrate",
        "signing_algorithm",
        "access_token_ttl",
        "refresh_token_idle_ttl",
        "refresh_token_ttl",
        "refresh_reuse_interval",
        "authorization_code_ttl",
        "key_rotation_interval",
        "jwks_max_age",
        "password_failures_per_account",
        "password_attempts_per_address",
        "password_window",
        "max_concurrent_hashes",
        "max_waiting_hashes",
    ):
        assert getattr(issuer, name) == SAMPLES[name][1], name
    store = issuer.store
    assert isinstance(store, SQLStore)
    assert store.migrate is False  # AUTHBRIDGE_MIGRATE=false reaches the store object


def test_an_audience_is_any_resource_uri_as_for_app_issuer() -> None:
    settings = AuthBridgeSettings(issuer=ISSUER, audience="urn:example:items")
    assert settings.app_issuer().audience == "urn:example:items"


def test_app_issuer_overrides_win() -> None:
    settings = AuthBridgeSettings(issuer=ISSUER, access_token_ttl=300, migrate=True)
    issuer = settings.app_issuer(
        issuer="https://other.example.com", access_token_ttl=60, migrate=False, name="shop"
    )
    assert (issuer.issuer, issuer.access_token_ttl, issuer.name) == (
        "https://other.example.com",
        60.0,
        "shop",
    )
    assert isinstance(issuer.store, SQLStore)
    assert issuer.store.migrate is False
    mine = SQLStore("sqlite+aiosqlite:///:memory:")
    assert settings.app_issuer(store=mine).store is mine


def test_app_issuer_needs_the_issuer_url() -> None:
    with pytest.raises(ConfigurationError, match="AUTHBRIDGE_ISSUER is not set") as failed:
        AuthBridgeSettings().app_issuer()
    assert failed.value.reason == "missing_setting"


def test_app_issuer_refusals_are_app_issuers() -> None:
    with pytest.raises(TypeError):
        AuthBridgeSettings(issuer=ISSUER).app_issuer(no_such_argument=1)
    with pytest.raises(ConfigurationError, match="unsupported_grant_type"):
        AuthBridgeSettings(issuer=ISSUER).app_issuer(grant_types=["implicit"])


def test_store_is_a_sql_store_with_the_pool_size(tmp_path: Path) -> None:
    settings = AuthBridgeSettings(
        store_url=f"sqlite+aiosqlite:///{tmp_path / 'a.db'}", store_pool_size=3, migrate=False
    )
    store = settings.store()
    assert isinstance(store, SQLStore)
    assert store.migrate is False
    assert settings.store(migrate=True).migrate is True
    assert store._db.engine.pool.size() == 3  # type: ignore[attr-defined]


def test_store_with_redis_keeps_durable_records_in_sql(tmp_path: Path) -> None:
    from authbridge.store._composite import CompositeStore  # noqa: PLC0415
    from authbridge.store._redis import RedisEphemeral  # noqa: PLC0415

    settings = AuthBridgeSettings(
        store_url=f"sqlite+aiosqlite:///{tmp_path / 'a.db'}",
        store_pool_size=4,
        redis_url=f"redis://:{REDIS_PASSWORD}@127.0.0.1:6379/0",
        redis_prefix="shop:",
        migrate=False,
    )
    store = settings.store()
    assert isinstance(store, CompositeStore)
    assert isinstance(store.durable, SQLStore)
    assert store.durable.migrate is False
    assert isinstance(store.ephemeral, RedisEphemeral)
    assert store.ephemeral.prefix == "shop:"
    assert REDIS_PASSWORD not in repr(store)
    assert settings.app_issuer(issuer=ISSUER).store.durable.migrate is False  # type: ignore[union-attr]


def test_a_redis_prefix_is_at_most_128_bytes() -> None:
    assert AuthBridgeSettings(redis_prefix="é" * 64).redis_prefix == "é" * 64
    with pytest.raises(ConfigurationError, match="AUTHBRIDGE_REDIS_PREFIX: at most 128 bytes"):
        AuthBridgeSettings(redis_prefix="é" * 65)


async def test_the_issuer_of_the_settings_starts_on_its_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'deploy.db'}"
    monkeypatch.setenv("AUTHBRIDGE_ISSUER", ISSUER)
    monkeypatch.setenv(STORE_VARIABLE, url)
    monkeypatch.setenv("AUTHBRIDGE_KEY_ENCRYPTION_KEY", KEK_A)
    monkeypatch.setenv("AUTHBRIDGE_MIGRATE", "false")
    from authbridge import AuthBridge  # noqa: PLC0415

    # migrate=false on an empty database: the app refuses to start, naming the fix
    refused = AuthBridge(providers=[], issuer=AuthBridgeSettings().app_issuer())
    with pytest.raises(ConfigurationError, match="authbridge db upgrade"):
        async with refused:
            pass
    assert refused.issuer is not None
    await refused.issuer.store.aclose()  # a refused start leaves the store's pool open
    monkeypatch.setenv("AUTHBRIDGE_MIGRATE", "true")
    auth = AuthBridge(providers=[], issuer=AuthBridgeSettings().app_issuer())
    async with auth:
        assert auth.issuer is not None
        [key] = await auth.issuer.keys.describe()
        assert key.kek_id == AuthBridgeSettings().key_encryption_key_ids[0]


def test_login_settings_take_every_login_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, (raw, _) in SAMPLES.items():
        if name.startswith("login_"):
            monkeypatch.setenv(_variable(name), raw)
    login = AuthBridgeSettings().login_settings()
    for name, (_, expected) in SAMPLES.items():
        field = name.removeprefix("login_")
        if name.startswith("login_") and hasattr(login, field):
            assert getattr(login, field) == expected, name
    assert login.accounts == AccountPolicy(create_accounts=False, link_by_email=True)


def test_login_settings_overrides_win() -> None:
    policy = AccountPolicy(default_scopes=frozenset({"items:read"}))
    login = AuthBridgeSettings(login_title="Shop").login_settings(accounts=policy, title="Other")
    assert login.accounts is policy
    assert login.title == "Other"
    with pytest.raises(ConfigurationError, match="idle"):
        AuthBridgeSettings().login_settings(session_idle_ttl=10 * 3600)


# --- finite, bounded lifetimes ----------------------------------------------------------------

FLOAT_SETTINGS = sorted(
    name for name, field in AuthBridgeSettings.model_fields.items() if field.annotation is float
)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "Infinity"])
@pytest.mark.parametrize("name", FLOAT_SETTINGS)
def test_no_float_setting_takes_a_non_finite_number(name: str, value: str) -> None:
    error = refusal(**{_variable(name): value})
    assert error.reason == "invalid_settings"
    assert _variable(name) in str(error)


@pytest.mark.parametrize(
    ("name", "most"),
    [
        ("access_token_ttl", 86400.0),
        ("refresh_token_idle_ttl", 3650 * 86400.0),
        ("refresh_token_ttl", 3650 * 86400.0),
        ("key_rotation_interval", 3650 * 86400.0),
        ("jwks_max_age", 30 * 86400.0),
        ("password_window", 30 * 86400.0),
        ("login_transaction_ttl", 86400.0),
        ("login_session_ttl", 3650 * 86400.0),
    ],
)
def test_each_lifetime_has_a_maximum(name: str, most: float) -> None:
    manual = {"key_rotation_interval": 0} if name == "jwks_max_age" else {}
    assert getattr(AuthBridgeSettings(**{name: most}, **manual), name) == most
    error = refusal(**{_variable(name): repr(most + 1)})
    assert _variable(name) in str(error)


def test_non_finite_durations_are_refused_in_code_too() -> None:
    for name in ("access_token_ttl", "refresh_reuse_interval", "key_rotation_interval"):
        with pytest.raises(ConfigurationError) as failed:
            AppIssuer("http://127.0.0.1:8000", **{name: float("inf")})
        assert failed.value.reason == "non_finite_duration", name
    with pytest.raises(ConfigurationError) as failed:
        LoginSettings(session_ttl=float("inf"))
    assert failed.value.reason == "non_finite_duration"


# --- development mode from the environment ----------------------------------------------------


@pytest.mark.parametrize("issuer", ["http://127.0.0.1:8000", "http://localhost:8000"])
def test_development_from_the_environment_is_for_a_loopback_issuer(
    monkeypatch: pytest.MonkeyPatch, issuer: str
) -> None:
    monkeypatch.setenv("AUTHBRIDGE_ISSUER", issuer)
    monkeypatch.setenv("AUTHBRIDGE_DEVELOPMENT", "true")
    assert AuthBridgeSettings().app_issuer().development is True


def test_development_from_the_environment_is_refused_for_a_public_issuer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AUTHBRIDGE_DEVELOPMENT", "true")
    monkeypatch.setenv("AUTHBRIDGE_ISSUER", ISSUER)
    error = refusal()
    assert error.reason == "invalid_settings"
    assert "AUTHBRIDGE_DEVELOPMENT" in str(error)
    monkeypatch.delenv("AUTHBRIDGE_ISSUER")
    settings = AuthBridgeSettings()  # no issuer yet: given to app_issuer
    with pytest.raises(ConfigurationError) as failed:
        settings.app_issuer(issuer=ISSUER)
    assert "AUTHBRIDGE_DEVELOPMENT" in str(failed.value)
    # in code, development mode stays the app's own choice
    assert settings.app_issuer(issuer=ISSUER, development=True).development is True
    assert AppIssuer(ISSUER, development=True).development is True
