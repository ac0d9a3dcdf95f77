"""Tests of bridge/storage and the export command."""
