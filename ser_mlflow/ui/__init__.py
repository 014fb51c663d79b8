"""ui: see the README's module table."""
