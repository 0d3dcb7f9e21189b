"""Who acts for whom: Principal.actors, auth.direct_principal and the /me/delegations routes."""
