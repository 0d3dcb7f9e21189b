"""Claim paths where well-known providers put roles, for ``OIDCProvider(roles_claims=...)``.

A path is either a top-level claim name (``"cognito:groups"``, or a namespaced
URL claim such as ``"https://example.com/roles"``) or dotted segments into
nested objects (``"realm_access.roles"``). A claim whose full name matches is
preferred over a dotted reading.
"""

from __future__ import annotations

__all__ = [
    "AUTH0_PERMISSIONS",
    "COGNITO_GROUPS",
    "ENTRA",
    "KEYCLOAK_REALM",
    "OKTA_GROUPS",
    "keycloak_client",
]

KEYCLOAK_REALM = "realm_access.roles"
"""Keycloak realm roles."""

ENTRA = "roles"
"""Microsoft Entra ID app roles."""

AUTH0_PERMISSIONS = "permissions"
"""Auth0 RBAC permissions (enable "Add Permissions in the Access Token")."""

COGNITO_GROUPS = "cognito:groups"
"""Amazon Cognito user-pool groups."""

OKTA_GROUPS = "groups"
"""Okta groups (needs a ``groups`` claim on the authorization server)."""


def keycloak_client(client_id: str) -> str:
    """Keycloak client roles of ``client_id`` (``resource_access.<id>.roles``)."""
    return f"resource_access.{client_id}.roles"
