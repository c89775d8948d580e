"""anasim.learning (DESIGN.md §2)."""
