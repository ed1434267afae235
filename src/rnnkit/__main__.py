"""`python -m rnnkit`: the command line (also what torchrun starts: `torchrun -m rnnkit train ...`)."""

import sys

from rnnkit.cli import main

sys.exit(main())
