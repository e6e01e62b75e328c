"""Data arrival: landing zones, what counts as a complete arrival, and its identity."""
