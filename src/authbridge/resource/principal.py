"""The authenticated caller, as every verifier returns it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

_set = object.__setattr__


class Principal(BaseModel):
    """Who is calling, from a verified token.

    Usable as a FastAPI response model. ``claims`` holds the verified token
    claims as received; the other fields are normalised views of them. A
    principal is cached and shared by every request carrying the same token:
    treat it, ``claims`` included, as read-only.

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
        default=None, description="The token's `sub` (user, or client for machine tokens)."
    )
    client_id: str | None = Field(
        default=None, description="The OAuth client the token was issued to."
    )
    scopes: frozenset[str] = Field(default=frozenset(), description="Granted scopes.")
    roles: frozenset[str] = Field(default=frozenset(), description="Roles or groups.")
    expires_at: datetime | None = Field(default=None, description="When the token expires.")
    token_id: str | None = Field(default=None, description="The token's `jti`.")
    claims: dict[str, Any] = Field(default_factory=dict, description="All verified claims.")

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
