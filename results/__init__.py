"""Aggregation (pure), plots and reports. Only io.py, records.py and plots.py
touch the disk."""
