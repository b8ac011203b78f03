"""Runnable examples (``uvicorn examples.notification_app:app``); each is exercised by a test."""
