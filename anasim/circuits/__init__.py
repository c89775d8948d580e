"""anasim.circuits (DESIGN.md §2)."""
