"""Layer 0: pure, no threads or I/O: records, settings, diagnostics, exceptions, scrubbing, the converter."""
