"""Tests that drive the packaged Swagger UI in a real browser (headless Debian Chromium)."""
