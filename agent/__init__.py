"""gauge-agent: flood early-warning water-level gauge agent."""

__version__ = "0.1.0"
