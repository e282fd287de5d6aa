"""``python -m flakeseg.cli``: the ``flakeseg`` command."""

from flakeseg.cli import main

raise SystemExit(main())
