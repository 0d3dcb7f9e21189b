"""Tests of the public test kit's provider fakes."""
