"""The command line and the demo: the top layer, the one place that composes the others.

The core (``dirac_like`` outside this package) imports neither the service
(``dirac_like.services``) nor the agents (``dirac_like.agents``); this package imports all
three, to run them from one command. The contract is checked by ``lint-imports`` (setup.cfg).
"""

from dirac_like.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
