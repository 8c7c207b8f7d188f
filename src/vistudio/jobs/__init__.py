"""Durable job queue, workers and the registry of job handlers."""
