"""Pure decision logic for allocations: the plan model, qauvern 0.14's optimizer, limits, the usage window and
the admin reports. No I/O."""
