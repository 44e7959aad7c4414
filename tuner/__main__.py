"""``python -m tuner`` entry point."""

from tuner.cli import main

raise SystemExit(main())
