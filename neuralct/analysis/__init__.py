"""CV analysis."""
