"""Reference measurements the orchestrator's speed is compared against."""
