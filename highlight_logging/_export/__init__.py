"""Layer 2: the pipeline: queue, worker, batching, sending, retry policy, counters, process hooks."""
