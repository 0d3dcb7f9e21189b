"""The login flow: send the browser to a provider (`LoginClient.start`), finish at the callback.

`start` creates a transaction (256-bit ``state``, PKCE verifier and nonce from
``secrets``, bound to the browser's binding cookie) and returns the provider's
authorization URL. `finish` checks the callback in a fixed order, every
refusal a [LoginError][authbridge.LoginError] raised before any call to the
provider's token endpoint (except those of the redemption itself):

1. a repeated ``state``, ``code``, ``iss`` or ``error`` parameter: ``duplicate_parameter``;
2. no ``state``: ``state_missing``;
3. the transaction is taken (single use, gone whatever follows): ``state_unknown``
   when there is none (unknown, expired or already used);
4. the browser binding (constant time): ``browser_mismatch``;
5. an ``error`` from the provider: ``provider_error`` (its bounded code in ``detail``);
6. RFC 9207 ``iss``: ``iss_mismatch`` when present and not the provider's,
   ``iss_missing`` when the provider advertises it and it is absent;
7. no ``code``: ``code_missing``;
8. the code is redeemed (PKCE verifier, the transaction's redirect URI), then
   the provider reads the identity (the ID token against the transaction's nonce).

The provider is always the transaction's, never one named by the callback.
Nothing logged here holds a code, state, verifier, nonce, token or cookie.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from .._clock import Clock
from ..errors import LoginError
from ..store import OneTimeStore
from ._base import (
    AuthorizationRequest,
    ExternalIdentity,
    ProviderLogin,
    code_challenge,
    provider_error_code,
)
from ._transactions import (
    PURPOSES,
    LoginPurpose,
    LoginTransaction,
    LoginTransactions,
    browser_hash,
    new_secret_value,
    same_browser,
)

__all__ = ["CALLBACK_PARAMETERS", "LoginClient", "LoginOutcome"]

logger = logging.getLogger("authbridge.login")

CALLBACK_PARAMETERS = ("state", "code", "iss", "error")
"""Callback parameters that must appear at most once."""

MAX_RETURN_TO = 2048


class LoginOutcome(NamedTuple):
    """A finished login: who the provider vouched for, and the transaction it belonged to."""

    identity: ExternalIdentity
    transaction: LoginTransaction


class LoginClient:
    """Starts and finishes logins at the configured providers.

    Args:
        logins: The login runtimes by provider name.
        store: Where transactions live (``store.one_time``).
        clock: Time source (POSIX seconds).
        callback_url: The app's callback URL (configuration, never derived
            from the request's ``Host``).
        transaction_ttl: Seconds a login may take, redirect to callback.
    """

    def __init__(
        self,
        logins: Mapping[str, ProviderLogin],
        store: OneTimeStore,
        *,
        clock: Clock,
        callback_url: str,
        transaction_ttl: float = 600.0,
    ) -> None:
        for name, login in logins.items():
            if login.name != name:
                raise ValueError(f"login runtime {login.name!r} registered as {name!r}")
        self._logins = dict(logins)
        self._clock = clock
        self._callback_url = callback_url
        self._transactions = LoginTransactions(store, clock=clock, ttl=transaction_ttl)

    @property
    def logins(self) -> Mapping[str, ProviderLogin]:
        """The login runtimes by provider name."""
        return self._logins

    @property
    def callback_url(self) -> str:
        """The redirect URI sent to every provider."""
        return self._callback_url

    async def start(
        self,
        provider: str,
        *,
        browser: str,
        purpose: str,
        return_to: str | None = None,
        authorize: Mapping[str, Any] | None = None,
        link_user: str | None = None,
        prompt: str | None = None,
        login_hint: str | None = None,
    ) -> str:
        """Begin a login at ``provider``; return the URL to send the browser to.

        Args:
            provider: The provider's name.
            browser: The browser-binding cookie's value (only its hash is stored).
            purpose: ``"authorize"``, ``"session"`` or ``"link"``.
            return_to: Where a session login ends (a same-origin path).
            authorize: The app's pending authorize request (purpose ``authorize``).
            link_user: The account to link to (purpose ``link``).
            prompt: OIDC ``prompt`` to send, if any.
            login_hint: OIDC ``login_hint`` to send, if any.

        Raises:
            LoginError: ``unknown_provider``, ``unsafe_return_path``.
            ValueError: an unknown purpose or an empty browser value.
            ProviderUnavailable: the provider's endpoints could not be discovered.
            StoreUnavailable: the store cannot be reached.
        """
        login = self._logins.get(provider)
        if login is None:
            raise LoginError("unknown_provider")
        if purpose not in PURPOSES:
            raise ValueError(f"unknown login purpose {purpose!r}")
        if not browser:
            raise ValueError("a login needs the browser-binding cookie value")
        if return_to is not None and not _plain_path(return_to):
            raise LoginError("unsafe_return_path", provider=provider)
        state = new_secret_value()
        verifier = new_secret_value() if login.uses_pkce else None
        nonce = new_secret_value() if login.uses_nonce else None
        url = await login.authorization_url(
            AuthorizationRequest(
                redirect_uri=self._callback_url,
                state=state,
                code_challenge=code_challenge(verifier) if verifier is not None else None,
                nonce=nonce,
                scopes=login.scopes,
                prompt=prompt,
                login_hint=login_hint,
            )
        )
        transaction = LoginTransaction(
            provider=provider,
            redirect_uri=self._callback_url,
            browser=browser_hash(browser),
            purpose=_purpose(purpose),
            created_at=self._clock(),
            nonce=nonce,
            code_verifier=verifier,
            return_to=return_to,
            authorize=dict(authorize) if authorize is not None else None,
            link_user=link_user,
        )
        await self._transactions.save(state, transaction)
        logger.debug("Login started at %s (purpose %s)", provider, purpose)
        return url

    async def finish(
        self, params: Sequence[tuple[str, str]], *, browser: str | None
    ) -> LoginOutcome:
        """Finish the login the callback's ``params`` answer (see the module for the order).

        Args:
            params: The callback's query (or form) parameters, in order, repeats kept.
            browser: The browser-binding cookie's value, ``None`` when absent.

        Raises:
            LoginError: ``duplicate_parameter``, ``state_missing``,
                ``state_unknown``, ``browser_mismatch``, ``provider_error``,
                ``iss_mismatch``, ``iss_missing``, ``code_missing``,
                ``unknown_provider``, or any refusal of the redemption or
                the identity (``token_error``, ``nonce_mismatch``...).
            ProviderUnavailable: the provider is down.
            StoreUnavailable: the store cannot be reached.
        """
        try:
            return await self._finish(params, browser)
        except LoginError as exc:
            logger.info(
                "Login refused: %s%s",
                exc.reason,
                f" (provider {exc.provider})" if exc.provider else "",
            )
            raise

    async def _finish(self, params: Sequence[tuple[str, str]], browser: str | None) -> LoginOutcome:
        values = _single_values(params)
        state = values.get("state")
        if not state:
            raise LoginError("state_missing")
        transaction = await self._transactions.take(state)
        if transaction is None:
            raise LoginError("state_unknown")
        name = transaction.provider
        if not same_browser(browser, transaction.browser):
            raise LoginError("browser_mismatch", provider=name)
        login = self._logins.get(name)
        if login is None:
            raise LoginError("unknown_provider", provider=name)
        error = values.get("error")
        if error is not None:
            raise LoginError(
                "provider_error", provider=name, detail={"error": provider_error_code(error)}
            )
        await self._check_iss(login, values.get("iss"))
        code = values.get("code")
        if not code:
            raise LoginError("code_missing", provider=name)
        tokens = await login.redeem(
            code, code_verifier=transaction.code_verifier, redirect_uri=transaction.redirect_uri
        )
        identity = await login.identity(tokens, nonce=transaction.nonce)
        if login.callback_fields:
            fields = {k: values[k] for k in login.callback_fields if k in values}
            identity = login.from_callback(identity, fields)
        logger.debug("Login finished at %s (purpose %s)", name, transaction.purpose)
        return LoginOutcome(identity, transaction)

    @staticmethod
    async def _check_iss(login: ProviderLogin, iss: str | None) -> None:
        """RFC 9207 §2.4: the ``iss`` parameter names the provider the transaction started at."""
        endpoints = await login.endpoints()
        if iss is not None:
            if endpoints.issuer is not None and iss != endpoints.issuer:
                raise LoginError("iss_mismatch", provider=login.name)
        elif endpoints.iss_parameter_supported:
            raise LoginError("iss_missing", provider=login.name)


def _single_values(params: Sequence[tuple[str, str]]) -> dict[str, str]:
    """The callback's parameters by name; a repeated one of `CALLBACK_PARAMETERS` is refused."""
    values: dict[str, str] = {}
    for name, value in params:
        if name in values and name in CALLBACK_PARAMETERS:
            raise LoginError("duplicate_parameter")
        values.setdefault(name, value)
    return values


def _purpose(value: str) -> LoginPurpose:
    if value == "authorize":
        return "authorize"
    if value == "session":
        return "session"
    return "link"


def _plain_path(value: str) -> bool:
    """A first line of defence: a path of this origin in printable ASCII, no backslash.

    The HTTP layer applies the full return-path rule before calling `start`.
    """
    return (
        0 < len(value) <= MAX_RETURN_TO
        and value.startswith("/")
        and not value.startswith("//")
        and value.isascii()
        and value.isprintable()
        and "\\" not in value
        and " " not in value
    )
