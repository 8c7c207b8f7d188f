"""Training library: the generic LightningModule (``module``) and DataModule (``data``), the
config (``config``), the task interface (``task``), callbacks, the trainer factory and ``train``
(``trainer``), and the child process that runs it (``process``). No database or web imports:
plain data in, callbacks out. Import the submodules directly; this package imports nothing, so
that reading a config does not load torch."""
