"""Swap every authbridge dependency of an app for those of a test `AuthBridge`, then restore."""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self

if TYPE_CHECKING:
    from ..fastapi import AuthBridge

_MISSING: Any = object()


class _App(Protocol):
    @property
    def dependency_overrides(self) -> MutableMapping[Callable[..., Any], Callable[..., Any]]: ...


class AuthOverride:
    """The overrides made by [override_auth][authbridge.testing.override_auth].

    A context manager: leaving the block restores what the app had before
    (``restore()`` does the same without a block).
    """

    def __init__(self, app: _App, replaced: dict[Callable[..., Any], Any]) -> None:
        self._app = app
        self._replaced = replaced

    @property
    def dependencies(self) -> tuple[Callable[..., Any], ...]:
        """The dependencies that are overridden."""
        return tuple(self._replaced)

    def restore(self) -> None:
        """Put back the app's previous overrides of these dependencies (none, usually).

        Overrides of other dependencies, made meanwhile, are left alone.
        Calling it twice is harmless.
        """
        overrides = self._app.dependency_overrides
        for dependency, previous in self._replaced.items():
            if previous is _MISSING:
                overrides.pop(dependency, None)
            else:
                overrides[dependency] = previous
        self._replaced = {}

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.restore()


def override_auth(app: _App, auth: AuthBridge, *, with_: AuthBridge) -> AuthOverride:
    """Make every dependency of ``auth`` in ``app`` use ``with_`` instead, in one call.

    ``auth.principal``, ``auth.optional_principal``, ``auth.active_principal``
    and ``auth.direct_principal`` (every entry of ``auth.dependencies``) are overridden by their
    counterparts of ``with_``, typically an `AuthBridge` trusting a
    `FakeIssuer`: real tokens, real validation, scopes enforced as declared.

    Args:
        app: The FastAPI app (anything with ``dependency_overrides``).
        auth: The app's own `AuthBridge`, whose dependencies its routes use.
        with_: The `AuthBridge` to validate tokens with instead.

    Returns:
        An `AuthOverride`; use it as a context manager (or call ``restore()``)
        to undo the overrides.

    Example:
        ```python
        fake = FakeIssuer(issuer="https://sso.example.com/", audience="items-api")
        test_auth = AuthBridge(providers=[fake.provider("sso")], transport=fake.transport)
        with override_auth(app, auth, with_=test_auth):
            client = TestClient(app)  # no `with`: the app's own lifespan is not run
            ...
        ```
    """
    replacements = with_.dependencies
    overrides = app.dependency_overrides
    replaced: dict[Callable[..., Any], Any] = {}
    for name, dependency in auth.dependencies.items():
        replaced[dependency] = overrides.get(dependency, _MISSING)
        overrides[dependency] = replacements[name]
    return AuthOverride(app, replaced)
