"""anasim.analysis (DESIGN.md §2)."""
