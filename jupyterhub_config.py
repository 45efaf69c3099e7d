# The platform's JupyterHub configuration. Kept thin on purpose: the wiring
# lives in hub.plugins.config (importable, tested against a bare Config()).
from hub.plugins.config import HubSettings, configure

configure(c, HubSettings.from_env())  # noqa: F821 - `c` is provided by JupyterHub
