"""Unit tests of doctor, metrics and the install units."""
