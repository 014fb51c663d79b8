"""jobs: see the README's module table."""
