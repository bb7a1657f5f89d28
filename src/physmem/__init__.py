"""physmem."""
