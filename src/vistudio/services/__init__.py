"""Use-cases, one module per aggregate. The only layer that commits transactions."""
