"""nn: see the README's module table."""
