"""Template tags of the demands app."""
