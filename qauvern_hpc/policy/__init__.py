"""The compiled policy the hot paths read and the job-to-instance mapping. Standard library only."""
