"""Tests of highlight_logging._transport, laid out like the package."""
