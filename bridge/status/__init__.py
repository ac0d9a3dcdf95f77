"""HTTP side: status page, Prometheus metrics and health (aiohttp)."""
