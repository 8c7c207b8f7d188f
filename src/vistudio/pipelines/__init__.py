"""Multi-stage batch pipelines: stages return outputs, the runner saves them."""
