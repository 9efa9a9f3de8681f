"""Secrets given by value (local stack, tests) or by reference to an SSM SecureString (AWS stages).

A parameter is read through Powertools' parameters utility and kept for `max_age` seconds, so
a warm Lambda costs no SSM call per webhook yet picks up a rotated secret within minutes.
Nothing here ever logs the value.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from chalicelib import aws
from chalicelib.settings import ConfigurationError

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.parameters import SSMProvider
    from types_boto3_ssm.client import SSMClient

# How long a value read from SSM is used before it is read again (a rotated secret takes this long).
SECRET_MAX_AGE_SECONDS = 300
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
        secret.get()  # 'whsec_...', read from SSM at most once per `max_age` seconds
    """

    def __init__(
        self,
        variable: str,
        value: str,
        parameter_variable: str,
        parameter_name: str,
        *,
        ssm: SSMClient | None = None,
        max_age: int = SECRET_MAX_AGE_SECONDS,
    ) -> None:
        self._variable = variable
        self._value = value
        self._parameter_variable = parameter_variable
        self._parameter_name = parameter_name
        self._ssm = ssm
        self._max_age = max_age
        self._provider: SSMProvider | None = None  # built on first read
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        # Never the value: this object may end up in a log line or a traceback.
        source = self._variable if self._value else f"{self._parameter_variable}={self._parameter_name!r}"
        return f"SecretSetting(from {source})"

    def get(self) -> str:
        """The secret; raises `ConfigurationError` (naming what to set) when it cannot be had."""
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
        from aws_lambda_powertools.utilities.parameters import SSMProvider
        from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError
        from botocore.exceptions import ClientError

        if self._provider is None:
            with self._lock:
                if self._provider is None:
                    self._provider = SSMProvider(boto3_client=self._ssm or aws.client("ssm"))
        try:
            value = self._provider.get(self._parameter_name, decrypt=True, max_age=self._max_age)
        except GetParameterError as exc:
            # Powertools wraps the SDK's error; the code that says what went wrong is on the original.
            cause = exc.__context__
            code = aws.error_code(cause) if isinstance(cause, ClientError) else ""
            problem = _CONFIGURATION_ERRORS.get(code)
            if problem is None:
                raise  # throttling or an outage: transient, let the caller answer 5xx and be retried
            raise ConfigurationError(
                f"the SSM parameter {self._parameter_name!r} named by {self._parameter_variable} {problem}; "
                f"create it as a SecureString holding {self._variable}, or point {self._parameter_variable} "
                "at the right name"
            ) from cause
        if not isinstance(value, str) or not value.strip():
            raise ConfigurationError(
                f"the SSM parameter {self._parameter_name!r} named by {self._parameter_variable} is empty"
            )
        return value
