"""The HTTP API (FastAPI). Nothing else in mailsc imports this package."""
