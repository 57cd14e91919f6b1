"""Data, models and the one training loop. Never imports ray: the orchestrator
hands in reporting and checkpointing callbacks."""
