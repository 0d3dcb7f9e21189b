"""The authenticated caller, as every verifier returns it."""

from __future__ import annotations

from collections.abc import Callable, ItemsView, Iterator, Mapping, ValuesView
from datetime import datetime
from typing import Any, NoReturn, cast

from pydantic import BaseModel, ConfigDict, Field, field_validator

_set = object.__setattr__
_new_object = object.__new__
_set_fields_set = vars(BaseModel)["__pydantic_fields_set__"].__set__
_set_extra = vars(BaseModel)["__pydantic_extra__"].__set__
_set_private = vars(BaseModel)["__pydantic_private__"].__set__


def _read_only(*_args: Any, **_kwargs: Any) -> NoReturn:
    raise TypeError(
        "Principal.claims is read-only: it is shared by every request carrying the same "
        "token. Work on a copy: principal.claims_copy() gives plain dicts and lists at "
        "every depth."
    )


class _FilledOnce(type):
    """Instances get their content when made, and never again through ``__init__``.

    ``dict.__init__`` and ``list.__init__`` refill an existing object in place,
    so the read-only types make ``__init__`` refuse, like every other mutating
    method, and are filled here instead. authbridge's own hot paths skip this
    call (see `_claims`); it serves copies, pickles and callers that rebuild a
    container through its type (``type(x)(...)``, ``dataclasses.asdict``).
    """

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        base: Any = cls.__mro__[1]  # dict or list
        made = base.__new__(cls)
        base.__init__(made, *args, **kwargs)
        return made


class ReadOnlyClaims(dict[str, Any], metaclass=_FilledOnce):
    """A ``dict`` whose content cannot change: ``Principal.claims`` and the objects in it.

    It compares, serialises (JSON, pydantic, FastAPI) and reads like the ``dict``
    it was built from; every mutating method (``__init__`` again included)
    raises ``TypeError``, and every object or array read from it is read-only
    too. ``copy()`` and ``dict(...)`` return a plain ``dict`` whose nested
    values stay read-only; ``Principal.claims_copy()`` is plain at every depth.

    Building one copies the top level only: a nested object or array is copied
    into its read-only form when it is first read (by ``[]``, ``get``,
    ``items``, ``values``, iteration-based copies...), so that a principal that
    is cached but never looked into costs no more than a shallow copy.
    """

    __slots__ = ()
    __init__ = __setitem__ = __delitem__ = __ior__ = _read_only
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


class ReadOnlyList(list[Any], metaclass=_FilledOnce):
    """A ``list`` whose content cannot change: arrays inside ``Principal.claims``.

    It compares equal to the ``list`` it was built from; every mutating method
    (``__init__`` again included) raises ``TypeError``, and the objects and
    arrays in it are read-only too. ``copy()`` returns a plain ``list``.
    """

    __slots__ = ()
    __init__ = __setitem__ = __delitem__ = __iadd__ = __imul__ = _read_only
    append = extend = insert = pop = remove = clear = sort = reverse = _read_only

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (list(self),))


_new_dict, _fill_dict = dict.__new__, dict.update
_new_list, _fill_list = list.__new__, list.extend


def _claims(mapping: Mapping[str, Any]) -> ReadOnlyClaims:
    """``ReadOnlyClaims(mapping)`` without the metaclass call: this runs for every principal."""
    made: ReadOnlyClaims = _new_dict(ReadOnlyClaims)
    _fill_dict(made, mapping)
    return made


def _array(items: list[Any]) -> ReadOnlyList:
    """``ReadOnlyList(items)`` without the metaclass call."""
    made: ReadOnlyList = _new_list(ReadOnlyList)
    _fill_list(made, items)
    return made


# Values handed out as they are: immutable scalars (all a JSON document holds besides
# objects and arrays) and what is read-only already.
_SCALARS: frozenset[type] = frozenset({str, int, float, bool, type(None)})
_SHARED: frozenset[type] = _SCALARS | {ReadOnlyClaims, ReadOnlyList, frozenset}


def _frozen(value: Any) -> Any:
    """``value`` in read-only form (containers are copied; never the original).

    An object becomes a `ReadOnlyClaims` holding its members as they are (they
    are frozen when read); an array is frozen with everything in it, objects
    again shallowly.
    """
    if isinstance(value, dict):
        if type(value) is ReadOnlyClaims:
            return value
        made = _new_dict(ReadOnlyClaims)  # _claims(value), inlined: a call costs as much
        _fill_dict(made, value)
        return made
    if type(value) is list and _SCALARS.issuperset(map(type, value)):
        array = _new_list(ReadOnlyList)  # arrays of strings: the common case
        _fill_list(array, value)
        return array
    return _rebuild(value, _FREEZE, objects_when_read=True)


def read_only_claims(claims: Mapping[str, Any], *, deep: bool = False) -> ReadOnlyClaims:
    """``claims`` as a read-only mapping (``ReadOnlyClaims``).

    By default a shallow copy, for claims nobody else holds (freshly parsed
    JSON): nested containers are copied when first read. With ``deep``, every
    container is copied now, so that later changes by whoever passed ``claims``
    cannot show. An already read-only mapping is returned as is. Any depth of
    nesting is copied without recursion.
    """
    if type(claims) is ReadOnlyClaims:
        return cast(ReadOnlyClaims, claims)
    if deep:
        claims = {k: v if type(v) in _SHARED else _rebuild(v, _FREEZE) for k, v in claims.items()}
    made: ReadOnlyClaims = _new_dict(ReadOnlyClaims)  # _claims(claims), inlined: the hot path
    _fill_dict(made, claims)
    return made


def plain_claims(claims: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of ``claims`` in plain ``dict`` and ``list`` form, changeable at every depth.

    Tuples stay tuples (of copies); other values are shared, being immutable
    (strings, numbers, frozensets...). Any depth is copied without recursion.
    """
    return _rebuild(claims, _THAW)  # type: ignore[no-any-return]


class _Form:
    """How `_rebuild` writes containers: a target type for objects and for arrays."""

    __slots__ = ("array", "kept", "leaf", "obj")

    def __init__(
        self,
        *,
        obj: Callable[[dict[str, Any]], dict[str, Any]],
        array: Callable[[list[Any]], list[Any]],
        kept: frozenset[type],
        leaf: Callable[[Any], Any],
    ) -> None:
        self.obj = obj  # builds the object from a fresh dict of converted members
        self.array = array  # builds the array from a fresh list of converted items
        self.kept = kept  # types handed over as they are, never descended into
        self.leaf = leaf  # converts any other value that is not an object or array


def _freeze_leaf(value: Any) -> Any:
    # A set's members are hashable, hence immutable already.
    return frozenset(value) if isinstance(value, set) else value


_FREEZE = _Form(obj=_claims, array=_array, kept=_SHARED, leaf=_freeze_leaf)
_THAW = _Form(obj=dict, array=list, kept=_SCALARS | {frozenset}, leaf=lambda value: value)

_OBJECT, _ARRAY, _TUPLE = 0, 1, 2


def _open(value: Any) -> tuple[int, Iterator[Any]] | None:
    """``(kind, members)`` of a container to rebuild, or ``None`` for any other value."""
    if isinstance(value, dict):
        return _OBJECT, iter(dict.items(value))  # raw: a read-only object's members as stored
    if isinstance(value, list):
        return _ARRAY, iter(list.__iter__(value))
    if isinstance(value, tuple):
        return _TUPLE, iter(value)
    if isinstance(value, Mapping):
        return _OBJECT, iter(value.items())
    return None


def _rebuild(value: Any, form: _Form, *, objects_when_read: bool = False) -> Any:
    """``value`` with every object and array in it rebuilt in ``form``.

    Depth first with an explicit stack, so that no nesting can exhaust the
    interpreter's recursion limit. With ``objects_when_read``, objects below the
    top are rebuilt shallowly (their members are handled when read).
    """
    if type(value) in form.kept:
        return value
    if type(value) is list and _SCALARS.issuperset(map(type, value)):
        return form.array(value)  # an array of scalars (most arrays): copied in one step
    opened = _open(value)
    if opened is None:
        return form.leaf(value)
    # One frame per open container: [kind, members left, converted so far, key being built].
    stack: list[list[Any]] = [[*opened, {} if opened[0] == _OBJECT else [], None]]
    while True:
        frame = stack[-1]
        kind, members, out = frame[0], frame[1], frame[2]
        for member in members:
            key = None
            if kind == _OBJECT:
                key, member = member  # noqa: PLW2901 - the member of a (key, member) pair
            if type(member) in form.kept:
                built = member
            elif objects_when_read and isinstance(member, dict):
                built = form.obj(member)
            elif type(member) is list and _SCALARS.issuperset(map(type, member)):
                built = form.array(member)  # an array of scalars: copied in one step
            else:
                inner = _open(member)
                if inner is not None:
                    frame[3] = key
                    stack.append([*inner, {} if inner[0] == _OBJECT else [], None])
                    break
                built = form.leaf(member)
            if kind == _OBJECT:
                out[key] = built
            else:
                out.append(built)
        else:
            stack.pop()
            done = (form.obj, form.array, tuple)[kind](out)  # indexed by _OBJECT, _ARRAY, _TUPLE
            if not stack:
                return done
            parent = stack[-1]
            if parent[0] == _OBJECT:
                parent[2][parent[3]] = done
            else:
                parent[2].append(done)


class Principal(BaseModel):
    """Who is calling, from a verified token.

    Usable as a FastAPI response model. ``claims`` holds the verified token
    claims as received; the other fields are normalised views of them. A
    principal is cached and shared by every request carrying the same token,
    so it is immutable: ``claims`` and every object and array in it are
    read-only (changing them raises ``TypeError``; copy them to work on them).

    A token used by someone acting for its subject (RFC 8693 delegation: an
    ``act`` claim) names that actor in ``actors``, the current one first;
    `delegated` is then true, and ``subject`` is still the person the token
    speaks for.

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
    actors: tuple[str, ...] = Field(
        default=(),
        description=(
            "Who acts for the subject (RFC 8693 `act`): the `sub` of each actor of the "
            "delegation chain, the current actor first; empty for a token used by its subject."
        ),
    )
    # A default is not validated: the empty claims are made read-only from the start.
    claims: dict[str, Any] = Field(
        default_factory=ReadOnlyClaims, description="All verified claims (read-only)."
    )

    @field_validator("claims", mode="after")
    @classmethod
    def _read_only_claims(cls, claims: dict[str, Any]) -> dict[str, Any]:
        # The caller may still hold the nested objects it passed: copy them all now.
        return read_only_claims(claims, deep=True)

    def claims_copy(self) -> dict[str, Any]:
        """A deep copy of `claims` made of plain `dict`s and `list`s, to change at will.

        `claims` itself is read-only at every depth (it is shared by every
        request carrying the same token); a shallow copy such as
        `dict(principal.claims)` still holds read-only objects and arrays.

        Example:
            ```python
            claims = user.claims_copy()
            claims.setdefault("realm_access", {}).setdefault("roles", []).append("auditor")
            ```
        """
        return plain_claims(self.claims)

    @classmethod
    def _trusted(cls, values: dict[str, Any]) -> Principal:
        """Build from already-validated values with every field given (hot path).

        What ``model_construct`` does, minus its per-field default handling:
        verified tokens are turned into principals on every first sight, and
        that loop is a measurable share of the cost. A test checks the result
        equals a fully validated model.
        """
        principal: Principal = _new_object(cls)
        _set(principal, "__dict__", values)
        # Every field is given; frozen models never change this set, so one is shared.
        # (The model's slots are written through their descriptors: no attribute lookup.)
        _set_fields_set(principal, _ALL_FIELDS)
        _set_extra(principal, None)
        _set_private(principal, None)
        return principal

    @property
    def delegated(self) -> bool:
        """Whether someone acts for the subject: the token carries an ``act`` claim.

        ``subject`` is then the person the token speaks for, ``client_id`` and
        ``actors[0]`` the robot or service using it. Routes that the subject
        alone may call take ``auth.direct_principal``, which refuses such tokens.
        """
        return bool(self.actors)

    def has_scopes(self, *scopes: str) -> bool:
        """Whether every one of ``scopes`` was granted."""
        return self.scopes.issuperset(scopes)

    def has_roles(self, *roles: str) -> bool:
        """Whether the principal holds every one of ``roles``."""
        return self.roles.issuperset(roles)


_ALL_FIELDS: set[str] = set(Principal.model_fields)
