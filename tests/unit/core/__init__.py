"""Unit tests of the foundation."""
