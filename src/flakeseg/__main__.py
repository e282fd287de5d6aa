"""``python -m flakeseg``: the ``flakeseg`` command (the console script's entry point)."""

from flakeseg.cli import main

raise SystemExit(main())
