"""search: see the README's module table."""
