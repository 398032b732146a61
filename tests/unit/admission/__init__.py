"""Unit tests of admission control (co-scheduling)."""
