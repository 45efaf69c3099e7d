"""`python -m hub.cli`: the `visiting` command."""

import sys

from hub.cli.main import main

sys.exit(main())
