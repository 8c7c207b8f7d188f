"""Observability: Prometheus metrics (``metrics``), structured JSON logs (``logs``) and the context
(request id, job id, project) that every log line carries (``context``). See docs/operations.md."""
