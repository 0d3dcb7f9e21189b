"""Tests of the login role (authbridge.client)."""
