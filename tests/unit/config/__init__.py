"""Unit tests of the site config."""
