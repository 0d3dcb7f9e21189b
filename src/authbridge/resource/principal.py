"""The authenticated caller, as every verifier returns it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, NoReturn

from pydantic import BaseModel, ConfigDict, Field, field_validator

_set = object.__setattr__


def _read_only(*_args: Any, **_kwargs: Any) -> NoReturn:
    raise TypeError(
        "Principal.claims is read-only: it is shared by every request carrying the same "
        "token. Work on a copy, e.g. copy.deepcopy(dict(principal.claims))."
    )


class ReadOnlyClaims(dict[str, Any]):
    """A ``dict`` whose content cannot change: what ``Principal.claims`` and its nested objects are.

    It compares, serialises (JSON, pydantic, FastAPI) and reads like the ``dict``
    it was built from; every mutating method raises ``TypeError``. ``copy()``
    returns a plain, mutable ``dict`` (its nested values stay read-only).
    """

    __slots__ = ()
    __setitem__ = __delitem__ = __ior__ = _read_only
    clear = pop = popitem = setdefault = update = _read_only

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (dict(self),))


class ReadOnlyList(list[Any]):
    """A ``list`` whose content cannot change: arrays inside ``Principal.claims``.

    It compares equal to the ``list`` it was built from; every mutating method
    raises ``TypeError``. ``copy()`` returns a plain, mutable ``list``.
    """

    __slots__ = ()
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _read_only
    append = extend = insert = pop = remove = clear = sort = reverse = _read_only

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (list(self),))


# Values shared as they are: immutable, and all a JSON document holds besides objects/arrays.
_SCALARS = frozenset({str, int, float, bool, type(None)})


def _frozen(value: Any) -> Any:
    if isinstance(value, dict):
        return value if type(value) is ReadOnlyClaims else read_only_claims(value)
    if isinstance(value, list):
        if type(value) is ReadOnlyList:
            return value
        if _SCALARS.issuperset(map(type, value)):  # arrays of strings: the common case
            return ReadOnlyList(value)
        return ReadOnlyList([_frozen(v) for v in value])
    if isinstance(value, tuple):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, set | frozenset):
        return frozenset(value)  # members are hashable, hence immutable already
    return value


def read_only_claims(claims: Mapping[str, Any]) -> ReadOnlyClaims:
    """A deeply read-only copy of ``claims`` (objects and arrays at every depth).

    Scalars are shared, containers copied once; an already read-only mapping is
    returned as is.
    """
    if type(claims) is ReadOnlyClaims:
        return claims
    frozen = ReadOnlyClaims(claims)
    # One C-level pass over the value types decides whether anything needs copying.
    if not _SCALARS.issuperset(map(type, frozen.values())):
        for name, value in claims.items():
            if type(value) not in _SCALARS:
                dict.__setitem__(frozen, name, _frozen(value))
    return frozen


class Principal(BaseModel):
    """Who is calling, from a verified token.

    Usable as a FastAPI response model. ``claims`` holds the verified token
    claims as received; the other fields are normalised views of them. A
    principal is cached and shared by every request carrying the same token,
    so it is immutable: ``claims`` and every object and array in it are
    read-only (changing them raises ``TypeError``; copy them to work on them).

    Example:
        ```python
        @app.get("/me")
        async def me(user: Principal = Security(auth.principal)) -> Principal:
            return user
        ```
    """

    model_config = ConfigDict(frozen=True)

    provider: str = Field(description="Name of the configured provider that issued the token.")
    issuer: str = Field(description="The token's `iss`.")
    subject: str | None = Field(
        default=None,
        description=(
            "The token's `sub`, or the claim the provider reads the subject from "
            "(user, or client for machine tokens)."
        ),
    )
    client_id: str | None = Field(
        default=None, description="The OAuth client the token was issued to."
    )
    scopes: frozenset[str] = Field(default=frozenset(), description="Granted scopes.")
    roles: frozenset[str] = Field(default=frozenset(), description="Roles or groups.")
    expires_at: datetime | None = Field(default=None, description="When the token expires.")
    token_id: str | None = Field(default=None, description="The token's `jti`.")
    claims: dict[str, Any] = Field(
        default_factory=dict, description="All verified claims (read-only)."
    )

    @field_validator("claims", mode="after")
    @classmethod
    def _read_only_claims(cls, claims: dict[str, Any]) -> dict[str, Any]:
        return read_only_claims(claims)

    @classmethod
    def _trusted(cls, values: dict[str, Any]) -> Principal:
        """Build from already-validated values with every field given (hot path).

        What ``model_construct`` does, minus its per-field default handling:
        verified tokens are turned into principals on every first sight, and
        that loop is a measurable share of the cost. A test checks the result
        equals a fully validated model.
        """
        principal = cls.__new__(cls)
        _set(principal, "__dict__", values)
        # Every field is given; frozen models never change this set, so one is shared.
        _set(principal, "__pydantic_fields_set__", _ALL_FIELDS)
        _set(principal, "__pydantic_extra__", None)
        _set(principal, "__pydantic_private__", None)
        return principal

    def has_scopes(self, *scopes: str) -> bool:
        """Whether every one of ``scopes`` was granted."""
        return self.scopes.issuperset(scopes)

    def has_roles(self, *roles: str) -> bool:
        """Whether the principal holds every one of ``roles``."""
        return self.roles.issuperset(roles)


_ALL_FIELDS: set[str] = set(Principal.model_fields)
