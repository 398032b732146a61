"""Unit tests of the rebalancer."""
