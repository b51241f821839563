"""The code behind `pilot bench` (DESIGN.md §12): the benchmark and its helpers."""
