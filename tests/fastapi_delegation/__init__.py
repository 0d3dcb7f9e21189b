"""Who acts for whom over HTTP: direct_principal and the /me/delegations routes."""
