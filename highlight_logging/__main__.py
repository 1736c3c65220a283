"""``python -m highlight_logging serve ...``: the same as the ``highlight-logging`` command."""

from highlight_logging._devtools.cli import main

raise SystemExit(main())
