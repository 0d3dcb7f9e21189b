"""Tests of the provider presets (authbridge.providers)."""
