"""Operating an installation: doctor's checks and Prometheus metrics."""
