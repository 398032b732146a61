"""Accounting: the sacct collector, attribution of IBM session usage to job runs, and the usage ledger."""
