"""One module per resource; the URL prefix is the module name."""
