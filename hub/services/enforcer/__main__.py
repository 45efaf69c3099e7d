"""`python -m hub.services.enforcer`: how the hub starts the service."""

import sys

from hub.services.enforcer.application import main

sys.exit(main())
