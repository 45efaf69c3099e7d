"""`python -m hub.services.admin`: how the hub starts the service."""

import sys

from hub.services.admin.application import main

sys.exit(main())
