"""Stand-ins the core's tests build it with: a fake clock, a counting DynamoDB client, a Management API."""
