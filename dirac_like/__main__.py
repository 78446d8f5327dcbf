"""``python -m dirac_like`` is the ``dirac-like`` command."""

from dirac_like.cli import main

raise SystemExit(main())
