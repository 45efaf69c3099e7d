"""`python -m extensions.federation.gateway`: the gateway of the site in the environment."""

import sys

from .application import main

sys.exit(main())
