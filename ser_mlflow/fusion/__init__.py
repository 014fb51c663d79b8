"""fusion: see the README's module table."""
