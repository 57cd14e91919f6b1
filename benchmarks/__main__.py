"""python -m benchmarks --size quick: see benchmarks/run.py."""
from benchmarks.run import main

raise SystemExit(main())
