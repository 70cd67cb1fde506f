"""Algorithms: each module holds only its objective and its update rule."""
