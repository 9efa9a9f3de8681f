"""Forget the process-wide boto3 clients of the app and of the core, after `AWS_ENDPOINT_URL` moved."""

from __future__ import annotations

from chalice_realtime import aws as core_aws

from chalicelib import aws as app_aws


def clear_clients() -> None:
    """Clients built before the endpoint variables changed point elsewhere: build them anew on next use."""
    app_aws.clear_clients()
    core_aws.clear_clients()
