"""anasim.study (DESIGN.md §2)."""
