"""The audit intake: activity events from the sites, the approvals' periods."""
