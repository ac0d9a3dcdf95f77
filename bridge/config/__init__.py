"""Mapping files: XSD validation, loading into the typed model, cross-checks."""
