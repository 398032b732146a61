"""Unit tests of the job record and AdminComment."""
