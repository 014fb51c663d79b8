"""models: see the README's module table."""
