"""``AuthBridgeSettings``: a deployment's settings, from ``AUTHBRIDGE_*`` environment variables.

Everything a deployment changes without touching code (the issuer's public URL,
the store and Redis URLs, the key-encryption keys, lifetimes, rate limits and
the login's session settings) in one object, read from the environment by
[pydantic-settings](https://docs.pydantic.dev/latest/concepts/pydantic_settings/):

```python
settings = AuthBridgeSettings()          # AUTHBRIDGE_ISSUER, AUTHBRIDGE_STORE, ...
auth = AuthBridge(
    providers=[...],
    issuer=settings.app_issuer(scopes={"items:read": "Read items"}),
    login=settings.login_settings(),
)
```

What stays in code (scopes, providers, hooks, your own user table) is passed to
`AuthBridgeSettings.app_issuer` and `AuthBridgeSettings.login_settings` as
keyword arguments, which also override any setting.

Secrets never show: the key-encryption keys are a ``SecretStr``, and the
passwords of the store and Redis URLs (in the userinfo or a ``password`` query
parameter) are ``***`` in ``repr()``, ``str()`` and ``model_dump()``. An invalid value is a
[ConfigurationError][authbridge.ConfigurationError] naming the variable,
never repeating its value.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from ._urls import redact_url
from .client._settings import LoginSettings, _cookie_name, _plain_path
from .errors import ConfigurationError
from .issuer._config import is_loopback_url
from .issuer._kek import KeyEncryption
from .metadata import check_issuer_url
from .store import DEFAULT_STORE_URL
from .store._sql_db import parse_url

if TYPE_CHECKING:
    from .issuer import AppIssuer
    from .store import Store

ENV_PREFIX = "AUTHBRIDGE_"
"""The prefix of every variable `AuthBridgeSettings` reads."""

STORE_VARIABLE = "AUTHBRIDGE_STORE"
"""The store URL's variable: the one the command line (``authbridge db``, ``users``...) reads."""

REDIS_SCHEMES = ("redis", "rediss", "unix")
"""URL schemes of a Redis server (TCP, TLS, a Unix socket)."""

DAY = 86400.0
YEAR = 365 * DAY


_PUBLIC_DEVELOPMENT = (
    "AUTHBRIDGE_DEVELOPMENT: true only for a loopback issuer (localhost, 127.0.0.1): "
    "development mode stores signing keys unencrypted; for a public issuer set "
    "AUTHBRIDGE_KEY_ENCRYPTION_KEY (or pass app_issuer(development=True) in code)"
)


def _comma_list(value: Any) -> Any:
    """``"a, b"`` -> ``("a", "b")``; other values (a list given in code) unchanged."""
    if isinstance(value, str):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    return value


CommaList = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_comma_list)]
"""A list given as one comma-separated variable (``a,b``), not JSON."""


def _resource_uri(value: str) -> bool:
    """Whether ``value`` is what `AppIssuer` takes as a resource: an absolute URI, no fragment."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return bool(parts.scheme) and not parts.fragment and "#" not in value


def _variable(field: str) -> str:
    if field == "store_url":
        return STORE_VARIABLE
    return ENV_PREFIX + field.upper()


class AuthBridgeSettings(BaseSettings):
    """A deployment's settings for the app's own issuer and its login.

    Each field is read from the environment variable ``AUTHBRIDGE_`` + its
    name in capitals (``AUTHBRIDGE_ACCESS_TOKEN_TTL``; names are not
    case-sensitive), except `store_url`, read from ``AUTHBRIDGE_STORE`` as
    the command line does. Keyword arguments win over the environment; an
    empty variable counts as unset. Lists are comma-separated
    (``AUTHBRIDGE_RESOURCES=https://a.example.com,https://b.example.com``).
    No ``.env`` file is read unless you pass one:
    ``AuthBridgeSettings(_env_file=".env")``; a directory of secret files
    (Kubernetes, Docker secrets), one file per variable, is read with
    ``AuthBridgeSettings(_secrets_dir="/run/secrets")``.

    Nothing connects here, nor in `store` or `app_issuer`: the store opens in
    the app's lifespan.

    Attributes:
        issuer: The issuer identifier: the app's public base URL
            (``AUTHBRIDGE_ISSUER``), required by `app_issuer`.
        store_url: The store: ``sqlite+aiosqlite:///PATH`` (one instance) or
            ``postgresql+asyncpg://USER:PASSWORD@HOST/DB`` (``AUTHBRIDGE_STORE``).
        store_pool_size: PostgreSQL connections each process keeps (as many
            more are opened under load).
        redis_url: Redis for the short-lived shared state (login
            transactions, codes, rate-limit windows, replay records):
            ``redis://HOST:6379/0``, ``rediss://`` for TLS. ``None``: they
            live in the SQL store.
        redis_prefix: The prefix of every Redis key (one per app sharing a
            Redis database).
        key_encryption_key: The key-encryption key(s) of the signing keys,
            comma-separated, newest first (``AUTHBRIDGE_KEY_ENCRYPTION_KEY``,
            as `AppIssuer` reads it).
        migrate: Upgrade the store's schema when the app starts; ``False``
            when the deploy runs ``authbridge db upgrade``.
        development: Development mode (keys may be stored unencrypted);
            ``None``: on for a loopback issuer only. ``True`` is refused with
            a non-loopback issuer (a leftover variable must not turn it on in
            production); in code, pass ``app_issuer(development=True)``.
        signing_algorithm: ``ES256``, ``RS256`` or ``EdDSA``, for new keys.
        audience: The ``aud`` of tokens asked without ``resource`` (the
            issuer URL when unset).
        resources: Other APIs clients may ask tokens for (RFC 8707).
        access_token_ttl: Lifetime of access tokens, in seconds (at most a day).
        refresh_token_idle_ttl: A refresh token unused this long expires.
        refresh_token_ttl: No refresh after this long from the login (at
            most 10 years, as `refresh_token_idle_ttl`).
        refresh_reuse_interval: The benign concurrent refresh allowance.
        authorization_code_ttl: Lifetime of an authorization code (at most 600 s).
        key_rotation_interval: Age at which a new signing key is scheduled
            (0: by hand only); more than twice `jwks_max_age`; at most 10 years.
        jwks_max_age: ``Cache-Control: max-age`` of the JWKS (at most 30 days).
        password_failures_per_account: Failed password logins per account
            per `password_window`.
        password_attempts_per_address: Password logins per client address
            per `password_window`.
        password_window: The password rate-limit window, in seconds (at
            most 30 days).
        max_concurrent_hashes: Password hashes computed at once, per process.
        max_waiting_hashes: Password logins waiting for a hash, per process.
        login_providers: The providers offering login, in order (``None``:
            every provider with a login client id).
        login_local_password: Offer the local username and password form.
        login_create_accounts: Create an account at a provider identity's
            first login.
        login_link_by_email: Link a first login to the one account with the
            same verified email.
        login_transaction_ttl: Seconds a login at a provider may take (at
            most a day).
        login_session_ttl: Absolute lifetime of a browser session (at most
            10 years, as `login_session_idle_ttl`).
        login_session_idle_ttl: A session unused this long ends.
        login_session_cookie: The session cookie's name.
        login_same_site: The session cookie's ``SameSite``: ``lax`` or ``strict``.
        login_after_login: Where a session login without ``next`` ends.
        login_after_logout: Where the browser goes after logging out.
        login_title: The login chooser's title.

    Every number must be finite (``inf`` and ``nan`` are refused).

    Raises:
        ConfigurationError: ``invalid_settings``, naming each invalid
            variable and why (never its value).

    Example:
        ```python
        settings = AuthBridgeSettings()
        issuer = settings.app_issuer(scopes=["items:read"])
        ```
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=None,
        env_ignore_empty=True,
        extra="ignore",  # other variables of the app's .env file; ours are checked
        hide_input_in_errors=True,
        frozen=True,
        allow_inf_nan=False,  # every number is finite (and each lifetime bounded)
    )

    issuer: str | None = None
    store_url: str = Field(DEFAULT_STORE_URL, validation_alias=STORE_VARIABLE)
    store_pool_size: int = Field(10, ge=1, le=1000)
    redis_url: str | None = None
    redis_prefix: str = Field("authbridge:", min_length=1)
    key_encryption_key: SecretStr | None = None
    migrate: bool = True
    development: bool | None = None
    signing_algorithm: Literal["ES256", "RS256", "EdDSA"] = "ES256"
    audience: str | None = None
    resources: CommaList = ()
    access_token_ttl: float = Field(600.0, gt=0, le=DAY)
    refresh_token_idle_ttl: float = Field(14 * DAY, gt=0, le=10 * YEAR)
    refresh_token_ttl: float = Field(90 * DAY, gt=0, le=10 * YEAR)
    refresh_reuse_interval: float = Field(10.0, ge=0, le=300)
    authorization_code_ttl: float = Field(60.0, gt=0, le=600)
    key_rotation_interval: float = Field(30 * DAY, ge=0, le=10 * YEAR)
    jwks_max_age: float = Field(3600.0, gt=0, le=30 * DAY)
    password_failures_per_account: int = Field(10, ge=1)
    password_attempts_per_address: int = Field(100, ge=1)
    password_window: float = Field(300.0, gt=0, le=30 * DAY)
    max_concurrent_hashes: int = Field(2, ge=1)
    max_waiting_hashes: int = Field(64, ge=0)
    login_providers: CommaList | None = None
    login_local_password: bool = True
    login_create_accounts: bool = True
    login_link_by_email: bool = False
    login_transaction_ttl: float = Field(600.0, ge=1, le=DAY)
    login_session_ttl: float = Field(8 * 3600.0, ge=1, le=10 * YEAR)
    login_session_idle_ttl: float = Field(3600.0, ge=1, le=10 * YEAR)
    login_session_cookie: str = "authbridge_session"
    login_same_site: Literal["lax", "strict"] = "lax"
    login_after_login: str = "/"
    login_after_logout: str = "/"
    login_title: str = Field("Log in", min_length=1, max_length=200)

    def __init__(self, **values: Any) -> None:
        unknown = sorted(n for n in values if not n.startswith("_") and n not in _FIELDS)
        if unknown:
            raise ConfigurationError(
                "invalid_settings", message=f"{unknown[0]}: not a setting of AuthBridgeSettings"
            )
        if "store_url" in values:  # the field's name, as for every other setting
            values[STORE_VARIABLE] = values.pop("store_url")
        _refuse_unknown_variables(
            [name for name in os.environ if name.upper() == "AUTHBRIDGE_STORE_URL"],
            _env_files(values.get("_env_file")),
        )
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigurationError("invalid_settings", message=_describe(exc)) from None
        except SettingsError as exc:
            # Raised for an unreadable source (a .env file, a secrets directory); the
            # message names the source, never a value.
            raise ConfigurationError("invalid_settings", message=str(exc)) from None

    # --- validation --------------------------------------------------------------------------

    @field_validator("issuer")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                check_issuer_url(value)
            except ConfigurationError as exc:
                raise ValueError(
                    f"{exc.reason}: an https:// URL with a host, without query, fragment or "
                    "/.well-known/ path, e.g. https://api.example.com"
                ) from None
        return value

    @field_validator("audience")
    @classmethod
    def _check_audience(cls, value: str | None) -> str | None:
        if value is not None and not _resource_uri(value):
            raise ValueError("an absolute URI without a fragment (RFC 8707)")
        return value

    @field_validator("resources")
    @classmethod
    def _check_resources(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not all(_resource_uri(resource) for resource in value):
            raise ValueError("each resource is an absolute URI without a fragment (RFC 8707)")
        return value

    @field_validator("store_url")
    @classmethod
    def _check_store(cls, value: str) -> str:
        try:
            parse_url(value)
        except ConfigurationError as exc:  # its message names the scheme, never the URL
            raise ValueError(exc.message or exc.reason) from None
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            parts = urlsplit(value)
            _ = parts.port
        except ValueError:
            raise ValueError("not a URL: redis://HOST:6379/0 or rediss://...") from None
        if parts.scheme not in REDIS_SCHEMES or (parts.scheme != "unix" and not parts.hostname):
            raise ValueError("a Redis URL is redis://HOST:6379/0, rediss://HOST/0 or unix://PATH")
        return value

    @field_validator("redis_prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        if len(value.encode("utf-8")) > 128:
            raise ValueError("at most 128 bytes")
        return value

    @field_validator("key_encryption_key")
    @classmethod
    def _check_keks(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            try:
                KeyEncryption(_split_keks(value))
            except ConfigurationError as exc:  # names the position of a bad key, not the key
                raise ValueError(exc.message or exc.reason) from None
        return value

    @field_validator("login_session_cookie")
    @classmethod
    def _check_cookie(cls, value: str) -> str:
        if not _cookie_name(value):
            raise ValueError(
                "letters, digits, '_' and '-', at most 64 (no '__Host-' prefix: added on https)"
            )
        return value

    @field_validator("login_after_login", "login_after_logout")
    @classmethod
    def _check_path(cls, value: str) -> str:
        if not _plain_path(value):
            raise ValueError("a path of this app starting with one '/', e.g. '/'")
        return value

    @model_validator(mode="after")
    def _check_together(self) -> AuthBridgeSettings:
        problems: list[str] = []
        interval, max_age = self.key_rotation_interval, self.jwks_max_age
        if interval and interval <= 2 * max_age:
            problems.append(
                "AUTHBRIDGE_KEY_ROTATION_INTERVAL: 0 (by hand only) or more than twice "
                "AUTHBRIDGE_JWKS_MAX_AGE"
            )
        if self.development and self.issuer is not None and not is_loopback_url(self.issuer):
            problems.append(_PUBLIC_DEVELOPMENT)
        if self.login_session_idle_ttl > self.login_session_ttl:
            problems.append(
                "AUTHBRIDGE_LOGIN_SESSION_IDLE_TTL: at most AUTHBRIDGE_LOGIN_SESSION_TTL"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # --- redaction ---------------------------------------------------------------------------

    @field_serializer("store_url", "redis_url")
    def _dump_url(self, value: str | None) -> str | None:
        return None if value is None else redact_url(value)

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            if name in ("store_url", "redis_url") and isinstance(value, str):
                yield name, redact_url(value)
            else:
                yield name, value

    # --- what the settings make --------------------------------------------------------------

    @property
    def key_encryption_key_ids(self) -> tuple[str, ...]:
        """The public ids of the configured key-encryption keys, newest first.

        The ``KEK`` column of ``authbridge keys list``: they identify a key
        without revealing it.
        """
        from .issuer._kek import _parse, kek_id  # noqa: PLC0415 - only when asked

        return tuple(
            kek_id(_parse(kek, position))
            for position, kek in enumerate(_split_keks(self.key_encryption_key))
        )

    def store(self, *, migrate: bool | None = None) -> Store:
        """The store these settings name (nothing connects before its ``start()``).

        A [SQLStore][authbridge.store.SQLStore] of `store_url` with
        `store_pool_size` connections; with `redis_url`, the durable data stay
        there and the short-lived shared state goes to Redis under
        `redis_prefix`.

        Args:
            migrate: Whether ``start()`` upgrades the schema (`migrate` by default).

        Raises:
            ConfigurationError: ``store_needs_postgres_extra`` or
                ``store_needs_redis_extra``: asyncpg or redis-py is not installed.
        """
        migrate = self.migrate if migrate is None else migrate
        return _open_store(
            self.store_url,
            migrate=migrate,
            pool_size=self.store_pool_size,
            redis=self.redis_url,
            redis_prefix=self.redis_prefix,
        )

    def app_issuer(self, **overrides: Any) -> AppIssuer:
        """An [AppIssuer][authbridge.AppIssuer] configured by these settings.

        Args:
            **overrides: Any `AppIssuer` argument, winning over the settings:
                what belongs in code (``scopes``, ``users``, ``name``,
                ``grant_types``...) or a setting you want fixed.

        Raises:
            ConfigurationError: ``missing_setting`` without an issuer URL
                (``AUTHBRIDGE_ISSUER``), or what `AppIssuer` refuses.
        """
        from .issuer import AppIssuer  # noqa: PLC0415 - the issuer imports the store lazily

        issuer = overrides.pop("issuer", self.issuer)
        if issuer is None:
            raise ConfigurationError(
                "missing_setting",
                message="AUTHBRIDGE_ISSUER is not set: the app's public base URL, e.g. "
                "https://api.example.com (or pass app_issuer(issuer=...))",
            )
        if "development" not in overrides and self.development and not is_loopback_url(issuer):
            raise ConfigurationError("invalid_settings", message=_PUBLIC_DEVELOPMENT)
        migrate = bool(overrides.pop("migrate", self.migrate))
        store = overrides.pop("store", None)
        arguments: dict[str, Any] = {
            "key_encryption_key": _split_keks(self.key_encryption_key),
            "development": self.development,
            "signing_algorithm": self.signing_algorithm,
            "audience": self.audience,
            "resources": self.resources,
            "access_token_ttl": self.access_token_ttl,
            "refresh_token_idle_ttl": self.refresh_token_idle_ttl,
            "refresh_token_ttl": self.refresh_token_ttl,
            "refresh_reuse_interval": self.refresh_reuse_interval,
            "authorization_code_ttl": self.authorization_code_ttl,
            "key_rotation_interval": self.key_rotation_interval,
            "jwks_max_age": self.jwks_max_age,
            "password_failures_per_account": self.password_failures_per_account,
            "password_attempts_per_address": self.password_attempts_per_address,
            "password_window": self.password_window,
            "max_concurrent_hashes": self.max_concurrent_hashes,
            "max_waiting_hashes": self.max_waiting_hashes,
        }
        arguments.update(overrides)
        if store is None:
            store = self.store(migrate=migrate)
        return AppIssuer(issuer, store=store, migrate=migrate, **arguments)

    def login_settings(self, **overrides: Any) -> LoginSettings:
        """The [LoginSettings][authbridge.client.LoginSettings] these settings describe.

        Args:
            **overrides: Any `LoginSettings` field, winning over the settings
                (``accounts=AccountPolicy(on_first_login=...)`` replaces
                `login_create_accounts` and `login_link_by_email`).

        Raises:
            ConfigurationError: what `LoginSettings` refuses.
        """
        from .client._accounts import AccountPolicy  # noqa: PLC0415 - only when asked

        arguments: dict[str, Any] = {
            "providers": self.login_providers,
            "local_password": self.login_local_password,
            "accounts": AccountPolicy(
                create_accounts=self.login_create_accounts,
                link_by_email=self.login_link_by_email,
            ),
            "transaction_ttl": self.login_transaction_ttl,
            "session_ttl": self.login_session_ttl,
            "session_idle_ttl": self.login_session_idle_ttl,
            "session_cookie": self.login_session_cookie,
            "same_site": self.login_same_site,
            "after_login": self.login_after_login,
            "after_logout": self.login_after_logout,
            "title": self.login_title,
        }
        arguments.update(overrides)
        return LoginSettings(**arguments)


_FIELDS = frozenset(AuthBridgeSettings.model_fields)
_VARIABLES = frozenset(_variable(name) for name in _FIELDS)


def _env_files(given: Any) -> list[Path]:
    """The ``.env`` files passed as ``_env_file`` (one path or several)."""
    if given is None:
        return []
    paths = [given] if isinstance(given, str | os.PathLike) else list(given)
    return [Path(p).expanduser() for p in paths if Path(p).expanduser().is_file()]


def _refuse_unknown_variables(environment: list[str], files: list[Path]) -> None:
    """Refuse ``AUTHBRIDGE_*`` names that are not settings, rather than ignore them.

    In the environment, only ``AUTHBRIDGE_STORE_URL`` (other tools have variables of
    their own under the prefix): one variable for the app and the command line, or
    ``authbridge db upgrade`` and the app would use different stores. In a ``.env``
    file passed here, every name under the prefix must be a setting.
    """
    from dotenv import dotenv_values  # noqa: PLC0415 - a dependency of pydantic-settings

    found = [(name, "the environment") for name in environment]
    for path in files:
        found += [
            (name, path.name)
            for name in dotenv_values(path)
            if name.upper().startswith(ENV_PREFIX) and name.upper() not in _VARIABLES
        ]
    if not found:
        return
    name, where = found[0]
    hint = (
        f": the store's URL is {STORE_VARIABLE}, the variable the command line reads too"
        if name.upper() == "AUTHBRIDGE_STORE_URL"
        else ""
    )
    raise ConfigurationError(
        "invalid_settings", message=f"{name} (in {where}) is not a setting{hint}"
    )


def _split_keks(value: SecretStr | None) -> tuple[str, ...]:
    """The comma-separated keys, as ``AppIssuer`` splits ``AUTHBRIDGE_KEY_ENCRYPTION_KEY``."""
    if value is None:
        return ()
    return tuple(k.strip() for k in value.get_secret_value().split(",") if k.strip())


def _describe(error: ValidationError) -> str:
    """Each problem as ``VARIABLE: why``; the values given never appear."""
    fields = AuthBridgeSettings.model_fields
    parts: list[str] = []
    for problem in error.errors(include_input=False, include_url=False):
        message = str(problem.get("msg", "invalid"))
        message = message.removeprefix("Value error, ")
        location = problem.get("loc", ())
        name = str(location[0]) if location else ""
        if name in fields:
            parts.append(f"{_variable(name)}: {message}")
        elif name.upper() == STORE_VARIABLE:
            parts.append(f"{STORE_VARIABLE}: {message}")
        elif name:
            parts.append(f"{name.upper()}: {message}")  # an unknown name, from a .env file
        else:
            parts.append(message)
    return "; ".join(parts)


def _open_store(
    url: str, *, migrate: bool, pool_size: int, redis: str | None, redis_prefix: str
) -> Store:
    """A SQL store of ``url``, with Redis for the short-lived state when ``redis`` is given."""
    from .store import SQLStore  # noqa: PLC0415 - keeps `import authbridge.settings` light
    from .store._composite import open_store  # noqa: PLC0415

    durable = SQLStore(url, migrate=migrate, pool_size=pool_size)
    return open_store(durable, migrate=migrate, redis=redis, redis_prefix=redis_prefix)
