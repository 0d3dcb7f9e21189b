"""The authenticated caller, as every verifier returns it."""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, Mapping, ValuesView
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
    """A ``dict`` whose content cannot change: ``Principal.claims`` and the objects in it.

    It compares, serialises (JSON, pydantic, FastAPI) and reads like the ``dict``
    it was built from; every mutating method raises ``TypeError``, and every
    object or array read from it is read-only too. ``copy()`` and ``dict(...)``
    return a plain ``dict`` (its nested values stay read-only).

    Building one copies the top level only: a nested object or array is copied
    into its read-only form when it is first read (by ``[]``, ``get``,
    ``items``, ``values``, iteration-based copies...), so that a principal that
    is cached but never looked into costs no more than a shallow copy.
    """

    __slots__ = ()
    __setitem__ = __delitem__ = __ior__ = _read_only
    clear = pop = popitem = setdefault = update = _read_only

    def __getitem__(self, name: str) -> Any:
        value = dict.__getitem__(self, name)
        if type(value) in _SHARED:
            return value
        value = _frozen(value)
        dict.__setitem__(self, name, value)
        return value

    def get(self, name: str, default: Any = None) -> Any:
        return self[name] if name in self else default  # noqa: SIM401 - self.get is this

    def __iter__(self) -> Iterator[str]:
        # Defined in Python on purpose: dict(claims), {**claims}, copy() and
        # other.update(claims) then read values through __getitem__, not raw.
        return dict.__iter__(self)

    def items(self) -> ItemsView[str, Any]:  # type: ignore[override]
        self._freeze_all()
        return dict.items(self)

    def values(self) -> ValuesView[Any]:  # type: ignore[override]
        self._freeze_all()
        return dict.values(self)

    def _freeze_all(self) -> None:
        for name, value in list(dict.items(self)):
            if type(value) not in _SHARED:
                dict.__setitem__(self, name, _frozen(value))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (dict(self),))


class ReadOnlyList(list[Any]):
    """A ``list`` whose content cannot change: arrays inside ``Principal.claims``.

    It compares equal to the ``list`` it was built from; every mutating method
    raises ``TypeError``, and the objects and arrays in it are read-only too.
    ``copy()`` returns a plain ``list``.
    """

    __slots__ = ()
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _read_only
    append = extend = insert = pop = remove = clear = sort = reverse = _read_only

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (list(self),))


# Values handed out as they are: immutable scalars (all a JSON document holds besides
# objects and arrays) and what is read-only already.
_SCALARS = frozenset({str, int, float, bool, type(None)})
_SHARED = _SCALARS | {ReadOnlyClaims, ReadOnlyList, frozenset}


def _frozen(value: Any) -> Any:
    """``value`` in read-only form (containers are copied; never the original)."""
    if isinstance(value, dict):
        return value if type(value) is ReadOnlyClaims else ReadOnlyClaims(value)
    if isinstance(value, list):
        if type(value) is ReadOnlyList:
            return value
        if _SCALARS.issuperset(map(type, value)):  # arrays of strings: the common case
            return ReadOnlyList(value)
        return ReadOnlyList([v if type(v) in _SHARED else _frozen(v) for v in value])
    if isinstance(value, tuple):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, set | frozenset):
        return frozenset(value)  # members are hashable, hence immutable already
    return value


def read_only_claims(claims: Mapping[str, Any], *, deep: bool = False) -> ReadOnlyClaims:
    """``claims`` as a read-only mapping (``ReadOnlyClaims``).

    By default a shallow copy, for claims nobody else holds (freshly parsed
    JSON): nested containers are copied when first read. With ``deep``, every
    container is copied now, so that later changes by whoever passed ``claims``
    cannot show. An already read-only mapping is returned as is.
    """
    if type(claims) is ReadOnlyClaims:
        return claims
    if deep:
        return ReadOnlyClaims({k: _deep_frozen(v) for k, v in claims.items()})
    return ReadOnlyClaims(claims)


def _deep_frozen(value: Any) -> Any:
    if type(value) in _SHARED:
        return value
    if isinstance(value, Mapping):
        return ReadOnlyClaims({k: _deep_frozen(v) for k, v in value.items()})
    if isinstance(value, list):
        return ReadOnlyList([_deep_frozen(v) for v in value])
    return _frozen(value)


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
        # The caller may still hold the nested objects it passed: copy them all now.
        return read_only_claims(claims, deep=True)

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
