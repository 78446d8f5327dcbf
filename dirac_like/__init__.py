"""dirac-like: a pilot workload framework in the line of DIRAC, AliEn and PanDA."""

__version__ = "0.1.0"
