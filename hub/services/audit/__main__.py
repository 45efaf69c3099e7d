"""`python -m hub.services.audit`: how the hub starts the service."""

import sys

from hub.services.audit.application import main

sys.exit(main())
