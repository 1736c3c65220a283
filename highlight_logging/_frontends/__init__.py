"""Layer 4: what user code touches: the handler, the structlog processor, the loguru sink."""
