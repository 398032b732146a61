"""Unit tests of the allocation planner."""
