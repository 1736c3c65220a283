"""Developer tools beside the package: nothing in highlight_logging imports from here but the CLI."""
