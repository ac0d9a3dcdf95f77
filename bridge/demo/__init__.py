"""The built-in demo: a mapping and simulator specs (``milur-bridge run`` without a mapping)."""
