"""Entry point: ``python -m bench`` (normally started by ``bash bench/run.sh``)."""

from bench.run import main

raise SystemExit(main())
