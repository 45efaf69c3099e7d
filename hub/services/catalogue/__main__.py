"""`python -m hub.services.catalogue`: how the hub starts the service."""

import sys

from hub.services.catalogue.application import main

sys.exit(main())
