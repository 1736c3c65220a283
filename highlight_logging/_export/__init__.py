"""The export layer: one pipeline per distinct settings, from the queue to the transport.

``pipeline`` (queue, worker, flush/shutdown) drives ``batch`` (a chunk's dispatch, span holding,
request packing) and ``sender`` (requests in flight, answers in order), which asks the pure
``retry.RetryPolicy`` what to do with each answer; ``prepare`` turns a record into bytes,
``priority`` keeps the worker behind the application, ``counters`` counts every loss by reason,
``threads`` knows where a worker thread may run (uWSGI), and ``process`` holds the registry and
the exit, SIGTERM and fork hooks.
"""
