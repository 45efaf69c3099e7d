"""The egress gate: the one place every byte a researcher's server sends to a client passes.

The browser, and any program holding the researcher's token, is outside the
site. In each researcher container the gate runs in its own process under its
own user (`gate`, uid 990), listens on the container's port that the hub's
proxy routes to (a privileged port, so no other user in the container can take
it), and alone forwards to the Jupyter server, which listens on the
container's loopback. It looks at every HTTP response body and every
websocket message from the server (kernels in both protocols, terminals, any
other socket) with one recogniser (`extensions.guard.recognise`) and one
policy (`policy.py`), counts what leaves with the egress meter
(`extensions.guard.meter`), and records blocks as audit events.

- `launch`: the container's first process (root, with only the capabilities to
  bind the port and change user): binds the port, starts the gate as `gate` and
  the server as `jovyan`, and ends the container when either ends.
- `proxy`: the gate's web application (tornado): `judge` (the `Gate` the
  handlers share), `http_proxy`, `websocket_proxy`, `frames` (kernel
  messages) and `events` (its audit events).
- `policy`: what is withheld and what a notice says, without a web framework.
"""

GATE_UID = 990
GATE_GID = 990
SERVER_UID = 1000
SERVER_GID = 1000
# the port of the Jupyter server behind the gate, on the container's loopback only
UPSTREAM_PORT = 8888
STATE_DIR = "/var/lib/visiting-gate"
