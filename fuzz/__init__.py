"""Fuzzing harnesses for the bridge's hostile-input surfaces (``make fuzz``; see ``fuzz/run.py``)."""
