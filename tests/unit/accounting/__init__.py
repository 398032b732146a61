"""Unit tests of collect and the ledger."""
