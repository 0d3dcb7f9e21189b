"""Claim paths where well-known providers put roles, for ``OIDCProvider(roles_claims=...)``.

A path is a top-level claim name (``"cognito:groups"``, or a namespaced URL
claim such as ``"https://example.com/roles"``), dotted segments into nested
objects (``"realm_access.roles"``; a claim whose full name matches is preferred
over a dotted reading), or a tuple of segments (``("resource_access",
"my.client", "roles")``) when a segment itself contains dots.
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


def keycloak_client(client_id: str) -> tuple[str, str, str]:
    """Keycloak client roles of ``client_id`` (``resource_access.<id>.roles``).

    A tuple of segments, so client ids containing dots work.
    """
    return ("resource_access", client_id, "roles")
