"""Tests of the login routes, pages and sessions of the FastAPI layer."""
