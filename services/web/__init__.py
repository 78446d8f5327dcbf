"""The web dashboard (``dirac-like service web``): see docs/monitoring.md, "Dashboard"."""
