"""Unit tests of the compiled policy, the mapping and job_submit.lua."""
