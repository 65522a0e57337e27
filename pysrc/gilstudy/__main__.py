"""``python -m gilstudy``: the ``gilstudy`` command (gilstudy.cli.main)."""

from gilstudy.cli import main

raise SystemExit(main())
