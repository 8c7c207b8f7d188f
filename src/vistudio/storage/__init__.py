"""On-disk stores: atomic writes and the content-addressed blob store."""
