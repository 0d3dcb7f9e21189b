"""What an app's routes declare: authbridge dependencies, their scopes, mistakes in them.

FastAPI keeps a route's ``Security(dep, scopes=[...])`` only as the list it
made of ``scopes``, so ``scopes="items"`` arrives as ``["i", "t", "e", "m",
"s"]``. The declaration itself is still reachable: in the route's
``dependencies`` and in the signatures of the endpoint and of its
dependencies, which is where this module looks.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from fastapi import params
from fastapi import routing as fastapi_routing
from fastapi.dependencies.utils import get_typed_signature

from ..errors import ConfigurationError


def route_contexts(routes: Iterable[Any]) -> Iterator[Any]:
    """Every route of ``routes`` as the app serves it (prefix and router dependencies applied).

    FastAPI 0.160+ keeps included routers as one entry (``iter_route_contexts``
    flattens them); older versions copied each route into the app.
    """
    iterate: Callable[[Any], Iterator[Any]] | None = getattr(
        fastapi_routing, "iter_route_contexts", None
    )
    for route in iterate(list(routes)) if iterate is not None else routes:
        yield route
        if getattr(route, "dependant", None) is None:
            sub_routes = getattr(getattr(route, "app", None), "routes", None)
            if isinstance(sub_routes, list):
                yield from route_contexts(sub_routes)  # a mounted sub-application


def _declared(call: Callable[..., Any]) -> Iterator[Any]:
    """The dependency declarations in a callable's signature (defaults and ``Annotated``)."""
    try:
        signature = get_typed_signature(call)
    except Exception:  # noqa: BLE001 - FastAPI reports unusable signatures itself
        return
    for parameter in signature.parameters.values():
        yield parameter.default
        annotation = parameter.annotation
        if typing.get_origin(annotation) is typing.Annotated:
            yield from typing.get_args(annotation)[1:]


def security_declarations(route: Any) -> Iterator[params.Security]:
    """Every ``Security(...)`` a route declares, however deep in its dependencies."""
    for declared in getattr(route, "dependencies", None) or ():
        if isinstance(declared, params.Security):
            yield declared
    dependant = getattr(route, "dependant", None)
    stack = [dependant] if dependant is not None else []
    seen: set[int] = set()
    while stack:
        current = stack.pop()
        call = current.call
        if call is not None and id(call) not in seen:
            seen.add(id(call))
            for declared in _declared(call):
                if isinstance(declared, params.Security):
                    yield declared
        stack.extend(current.dependencies)


def describe_route(route: Any) -> str:
    """``GET /items (list_items)``: how an error message names a route."""
    methods = getattr(route, "methods", None)
    verb = ", ".join(sorted(methods)) if methods else "WEBSOCKET"
    path = getattr(route, "path_format", None) or getattr(route, "path", "?")
    name = getattr(route, "name", None)
    return f"{verb} {path}" + (f" ({name})" if name else "")


def _dependency_name(dependency: Any) -> str:
    name = getattr(dependency, "attribute_name", None)
    if isinstance(name, str):
        return f"auth.{name}"
    return getattr(dependency, "__name__", type(dependency).__name__)


def scope_string_error(route: Any) -> ConfigurationError | None:
    """The error for a ``Security(..., scopes="a string")`` in ``route``, or ``None``."""
    for declared in security_declarations(route):
        scopes: Any = declared.scopes
        if isinstance(scopes, str | bytes):
            text = scopes if isinstance(scopes, str) else scopes.decode("latin-1")
            suggestion = [s for s in text.split(" ") if s] or [text]
            dependency = _dependency_name(declared.dependency)
            return ConfigurationError(
                "scopes_must_be_a_list",
                message=(
                    f"{describe_route(route)} declares Security({dependency}, "
                    f"scopes={scopes!r}): scopes must be a list, e.g. scopes={suggestion!r}. "
                    f"FastAPI reads a string letter by letter, as {list(text)[:8]!r}"
                ),
            )
    return None


def check_scope_declarations(routes: Iterable[Any]) -> None:
    """Raise `ConfigurationError` for the first route with a string where scopes go."""
    for route in route_contexts(routes):
        error = scope_string_error(route)
        if error is not None:
            raise error


def operation_usage(
    routes: Iterable[Any], dependencies: Iterable[Any]
) -> dict[tuple[str, str], bool]:
    """``(path, method)`` → "optional" for each HTTP operation using one of ``dependencies``.

    ``path`` and ``method`` (lower case) are the keys of the OpenAPI document.
    An operation is optional when it uses only dependencies with
    ``auto_error=False`` (``optional_principal``): anonymous callers are served.
    """
    ours = {id(d) for d in dependencies}
    found: dict[tuple[str, str], bool] = {}
    for route in route_contexts(routes):
        dependant = getattr(route, "dependant", None)
        methods = getattr(route, "methods", None)
        if dependant is None or not methods:
            continue
        required = optional = False
        stack = list(dependant.dependencies)
        while stack:
            current = stack.pop()
            if id(current.call) in ours:
                if getattr(current.call, "auto_error", True):
                    required = True
                else:
                    optional = True
            stack.extend(current.dependencies)
        if required or optional:
            for method in methods:
                found[(route.path_format, method.lower())] = not required
    return found
