"""The catalogue: what each site holds, counts through the gateways, the user guide."""
