"""The authenticated caller, as every verifier returns it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Principal(BaseModel):
    """Who is calling, from a verified token.

    Usable as a FastAPI response model. ``claims`` holds the verified token
    claims as received; the other fields are normalised views of them.

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

    def has_scopes(self, *scopes: str) -> bool:
        """Whether every one of ``scopes`` was granted."""
        return self.scopes.issuperset(scopes)

    def has_roles(self, *roles: str) -> bool:
        """Whether the principal holds every one of ``roles``."""
        return self.roles.issuperset(roles)
