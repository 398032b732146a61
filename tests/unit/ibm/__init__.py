"""Unit tests of the IBM client."""
