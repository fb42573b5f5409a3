"""Plots for the chapters: each function returns a matplotlib Figure."""
