"""What ``AuthBridge.install`` adds to the OpenAPI document of the routes it protects.

Added to the document once (not per request, not as sub-dependencies):

- the Swagger login schemes, as *alternatives* (separate requirement objects:
  OR) of the pasted-token scheme wherever that one is required;
- an empty requirement (``{}``) where the token is optional;
- the refusals a client must expect: 401 and, with scopes (or where delegated
  tokens are refused: ``direct_principal``), 403, with the RFC 6750
  ``WWW-Authenticate`` header, and 503 with ``Retry-After``;
- the scopes each operation requires, in its description.

Every step is idempotent: the document may be rebuilt.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping
from typing import Any

REFUSAL_SCHEMA_NAME = "AuthRefusal"
REFUSAL_SCHEMA: dict[str, Any] = {
    "title": REFUSAL_SCHEMA_NAME,
    "type": "object",
    "properties": {
        "detail": {
            "type": "string",
            "title": "Detail",
            "description": (
                "A generic message (the reason is in the server's log; with "
                "AuthBridge(explain_refusals=True), in development, an object with it)"
            ),
        }
    },
    "required": ["detail"],
}
"""The body of a 401/403/503, in ``components.schemas``."""


def _body(ref: str | None) -> dict[str, Any]:
    # Fresh objects for every operation: a document is a tree, not a graph.
    schema = {"$ref": ref} if ref is not None else json.loads(json.dumps(REFUSAL_SCHEMA))
    return {"application/json": {"schema": schema}}


DELEGATED_REFUSED = (
    "A delegated token (one with an `act` claim: someone acting for the user) is not accepted here"
)


def _code(value: str) -> str:
    return f"`{value}`"


def refusal_responses(
    scopes: list[str], *, optional: bool, body_ref: str | None = None, direct: bool = False
) -> dict[str, dict[str, Any]]:
    """The 401 / 403 / 503 response objects of an operation requiring ``scopes``.

    ``body_ref`` points at `REFUSAL_SCHEMA` in the document; the schema is
    inlined without one. ``direct``: the operation refuses delegated tokens
    (``direct_principal``), a 403 too.
    """
    unauthorized = (
        "The access token is invalid or expired"
        if optional
        else "No access token, or an invalid or expired one"
    )
    responses: dict[str, dict[str, Any]] = {
        "401": {
            "description": unauthorized,
            "headers": {
                "WWW-Authenticate": {
                    "description": (
                        'RFC 6750 challenge: `Bearer`, with `error="invalid_token"` when a '
                        "token was sent"
                    ),
                    "schema": {"type": "string"},
                }
            },
            "content": _body(body_ref),
        },
        "503": {
            "description": "The token's provider could not be asked; retry later",
            "headers": {
                "Retry-After": {
                    "description": "Seconds to wait before retrying",
                    "schema": {"type": "integer", "minimum": 1},
                }
            },
            "content": _body(body_ref),
        },
    }
    reasons: list[str] = []
    challenges: list[str] = []
    if scopes:
        reasons.append("The token lacks a required scope: " + ", ".join(_code(s) for s in scopes))
        challenges.append(
            'RFC 6750 challenge: `Bearer error="insufficient_scope", scope="'
            + " ".join(scopes)
            + '"`'
        )
    if direct:
        reasons.append(DELEGATED_REFUSED)
        challenges.append("`Bearer` (no error code) for a delegated token")
    if reasons:
        responses["403"] = {
            "description": "; or ".join(reasons),
            "headers": {
                "WWW-Authenticate": {
                    "description": "; ".join(challenges),
                    "schema": {"type": "string"},
                }
            },
            "content": _body(body_ref),
        }
    return responses


def scopes_sentence(scopes: list[str], *, optional: bool) -> str | None:
    """The line added to an operation's description, or ``None``."""
    listed = ", ".join(_code(s) for s in scopes)
    if optional:
        if scopes:
            return f"Access token optional; when one is sent, it requires scopes: {listed}."
        return "Access token optional."
    return f"Requires scopes: {listed}." if scopes else None


def extend_document(
    document: dict[str, Any],
    *,
    scheme_name: str,
    alternatives: Mapping[str, dict[str, Any]],
    optional: Mapping[tuple[str, str], bool],
    direct: Collection[tuple[str, str]] = frozenset(),
) -> None:
    """Add the alternatives, refusals and scopes to every operation requiring ``scheme_name``.

    Args:
        document: The OpenAPI document, changed in place.
        scheme_name: The pasted-token scheme of the `AuthBridge`.
        alternatives: Other schemes a client may use instead (Swagger login), by name.
        optional: ``(path, method)`` → whether the token is optional there.
        direct: The ``(path, method)`` of operations refusing delegated tokens.
    """
    components = document.setdefault("components", {})
    schemes = components.setdefault("securitySchemes", {})
    for name, scheme in alternatives.items():
        schemes.setdefault(name, scheme)
    others = [name for name, scheme in alternatives.items() if schemes[name] == scheme]
    # The app may have a model of that name: then the schema is inlined.
    existing = components.get("schemas", {}).get(REFUSAL_SCHEMA_NAME)
    ref = (
        f"#/components/schemas/{REFUSAL_SCHEMA_NAME}"
        if existing in (None, REFUSAL_SCHEMA)
        else None
    )
    extended = False
    for path, path_item in document.get("paths", {}).items():
        for method, operation in path_item.items():
            if isinstance(operation, dict) and operation.get("security"):
                extended |= _extend_operation(
                    operation,
                    scheme_name=scheme_name,
                    others=others,
                    optional=optional.get((path, method), False),
                    body_ref=ref,
                    direct=(path, method) in direct,
                )
    if extended and ref is not None:
        schemas = components.setdefault("schemas", {})
        schemas.setdefault(REFUSAL_SCHEMA_NAME, json.loads(json.dumps(REFUSAL_SCHEMA)))


def _extend_operation(
    operation: dict[str, Any],
    *,
    scheme_name: str,
    others: Iterable[str],
    optional: bool,
    body_ref: str | None,
    direct: bool,
) -> bool:
    security: list[dict[str, list[str]]] = operation["security"]
    ours = [r[scheme_name] for r in security if len(r) == 1 and scheme_name in r]
    if not ours:
        return False
    # Every dependency of the operation must pass (AND): all their scopes are required.
    scopes: list[str] = []
    for requirement in ours:
        scopes.extend(s for s in requirement if s not in scopes)
    for requirement in ours:
        for name in others:
            alternative = {name: list(requirement)}
            if alternative not in security:
                security.append(alternative)
    if optional and {} not in security:
        security.append({})
    responses = operation.setdefault("responses", {})
    refusals = refusal_responses(scopes, optional=optional, body_ref=body_ref, direct=direct)
    for status, response in refusals.items():
        responses.setdefault(status, response)
    sentence = scopes_sentence(scopes, optional=optional)
    if sentence is not None:
        description = operation.get("description") or ""
        if sentence not in description:
            operation["description"] = f"{description}\n\n{sentence}" if description else sentence
    return True
