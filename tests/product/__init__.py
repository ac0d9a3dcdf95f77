"""Product-level tests: commands, reload, status page in a browser, the demo."""
