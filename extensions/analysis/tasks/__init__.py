"""The federated tasks the gateways may run: name -> Task class (the allow-list's universe)."""

TASKS: dict = {}
