"""scoring: see the README's module table."""
