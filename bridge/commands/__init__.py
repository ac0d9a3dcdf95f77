"""Sub-commands of ``milur-bridge`` (one module each, discovered by ``bridge.cli``)."""
