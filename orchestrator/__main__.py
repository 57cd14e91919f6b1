from orchestrator.cli import console

console()
