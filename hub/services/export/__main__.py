"""`python -m hub.services.export`: how the hub starts the service."""

import sys

from hub.services.export.application import main

sys.exit(main())
