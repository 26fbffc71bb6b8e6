"""`python -m clipsweep.orchestrator`: the `clipsweep` command line."""

import sys

from .cli import main

sys.exit(main())
