"""tqmon: Prometheus metrics for Redis-backed task queues and the Redis (Cluster) under them."""

__version__ = "0.1.0"
