"""Secrets given by value (local stack, tests) or by reference to an SSM SecureString (AWS stages).

The value is read once per process and kept while the Lambda is warm, so a
webhook costs no SSM call after the first. Nothing here ever logs the value.
"""

from __future__ import annotations

import threading
from typing import Any

from chalicelib.realtime import aws
from chalicelib.settings import ConfigurationError

# SSM answers these when the parameter or the permission to read it is missing: retrying cannot help.
_CONFIGURATION_ERRORS = {
    "ParameterNotFound": "does not exist",
    "ParameterVersionNotFound": "does not exist",
    "AccessDeniedException": "cannot be read by this function (IAM: ssm:GetParameter, and kms:Decrypt)",
    "AccessDenied": "cannot be read by this function (IAM: ssm:GetParameter, and kms:Decrypt)",
}


class SecretSetting:
    """A secret set directly in one variable or named, as an SSM SecureString, in another.

    Exactly one of the two must be set; otherwise `get()` raises `ConfigurationError`
    saying which variable to set. A missing or unreadable parameter is a
    `ConfigurationError` too and is not cached, so fixing it needs no redeploy.

        secret = SecretSetting("STRIPE_WEBHOOK_SECRET", "", "STRIPE_WEBHOOK_SECRET_PARAM", "/prod/stripe")
        secret.get()  # 'whsec_...', read from SSM on the first call only
    """

    def __init__(
        self,
        variable: str,
        value: str,
        parameter_variable: str,
        parameter_name: str,
        *,
        ssm: Any = None,
    ) -> None:
        self._variable = variable
        self._value = value
        self._parameter_variable = parameter_variable
        self._parameter_name = parameter_name
        self._ssm = ssm
        self._cached: str | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        # Never the value: this object may end up in a log line or a traceback.
        source = self._variable if self._value else f"{self._parameter_variable}={self._parameter_name!r}"
        return f"SecretSetting(from {source})"

    def get(self) -> str:
        """The secret; raises `ConfigurationError` (naming what to set) when it cannot be had."""
        if self._cached is None:
            with self._lock:
                if self._cached is None:
                    self._cached = self._resolve()
        return self._cached

    def _resolve(self) -> str:
        if self._value and self._parameter_name:
            raise ConfigurationError(
                f"both {self._variable} and {self._parameter_variable} are set; set only one "
                f"({self._variable} locally, {self._parameter_variable} on AWS stages)"
            )
        if self._value:
            return self._value
        if not self._parameter_name:
            raise ConfigurationError(
                f"{self._variable} is not configured: set {self._parameter_variable} to the name of an "
                f"SSM SecureString parameter holding it (AWS stages), or {self._variable} itself "
                "(local stack, tests)"
            )
        return self._read_parameter()

    def _read_parameter(self) -> str:
        from botocore.exceptions import ClientError

        ssm = self._ssm or aws.client("ssm")
        try:
            response = ssm.get_parameter(Name=self._parameter_name, WithDecryption=True)
        except ClientError as exc:
            problem = _CONFIGURATION_ERRORS.get(exc.response.get("Error", {}).get("Code", ""))
            if problem is None:
                raise  # throttling or an outage: transient, let the caller answer 5xx and be retried
            raise ConfigurationError(
                f"the SSM parameter {self._parameter_name!r} named by {self._parameter_variable} {problem}; "
                f"create it as a SecureString holding {self._variable}, or point {self._parameter_variable} "
                "at the right name"
            ) from exc
        value = str(response["Parameter"].get("Value") or "")
        if not value.strip():
            raise ConfigurationError(
                f"the SSM parameter {self._parameter_name!r} named by {self._parameter_variable} is empty"
            )
        return value
