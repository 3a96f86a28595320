"""Side-by-side data-plane benchmark (issue 11): ``python -m scripts.bench --help``."""
