"""Delivery: the retry policy and the worker that moves messages from the outbox to a transport."""

from .retry import RetryDecision, RetryPolicy
from .worker import Worker

__all__ = ["RetryDecision", "RetryPolicy", "Worker"]
