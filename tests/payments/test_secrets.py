"""SecretSetting: a secret given by value or named as an SSM SecureString, read through Powertools.

SSM is moto's; the values never appear in a repr (they may end up in a log line).
"""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.secrets import SecretSetting
from chalicelib.settings import ConfigurationError


def test_the_secret_is_read_from_an_ssm_securestring_once_per_max_age(ssm: Any) -> None:
    ssm.put_parameter(Name="/chalice-realtime/stripe", Value="whsec_from_ssm", Type="SecureString")
    secret = SecretSetting(
        "STRIPE_WEBHOOK_SECRET", "", "STRIPE_WEBHOOK_SECRET_PARAM", "/chalice-realtime/stripe", ssm=ssm
    )
    assert secret.get() == "whsec_from_ssm"
    ssm.delete_parameter(Name="/chalice-realtime/stripe")
    assert secret.get() == "whsec_from_ssm"  # kept while warm: no SSM call per webhook
    assert "whsec" not in repr(secret)


def test_a_rotated_secret_is_picked_up_once_the_kept_value_is_older_than_max_age(ssm: Any) -> None:
    name = "/chalice-realtime/rotating"
    ssm.put_parameter(Name=name, Value="whsec_before", Type="SecureString")
    kept = SecretSetting("STRIPE_WEBHOOK_SECRET", "", "STRIPE_WEBHOOK_SECRET_PARAM", name, ssm=ssm)
    expiring = SecretSetting(
        "STRIPE_WEBHOOK_SECRET", "", "STRIPE_WEBHOOK_SECRET_PARAM", name, ssm=ssm, max_age=0
    )
    assert kept.get() == expiring.get() == "whsec_before"
    ssm.put_parameter(Name=name, Value="whsec_after", Type="SecureString", Overwrite=True)
    assert kept.get() == "whsec_before"  # younger than its max_age (300 s)
    assert expiring.get() == "whsec_after"  # older than its max_age: read again


def test_a_missing_parameter_is_a_configuration_error_naming_it(ssm: Any) -> None:
    secret = SecretSetting(
        "STRIPE_WEBHOOK_SECRET", "", "STRIPE_WEBHOOK_SECRET_PARAM", "/nope/stripe", ssm=ssm
    )
    with pytest.raises(
        ConfigurationError, match=r"'/nope/stripe'.*STRIPE_WEBHOOK_SECRET_PARAM.*does not exist"
    ):
        secret.get()
    # Not cached: creating the parameter fixes it without a restart.
    ssm.put_parameter(Name="/nope/stripe", Value="whsec_now", Type="SecureString")
    assert secret.get() == "whsec_now"


def test_no_secret_configured_is_an_error_saying_what_to_set() -> None:
    secret = SecretSetting("STRIPE_WEBHOOK_SECRET", "", "STRIPE_WEBHOOK_SECRET_PARAM", "")
    with pytest.raises(
        ConfigurationError, match=r"set STRIPE_WEBHOOK_SECRET_PARAM.*or STRIPE_WEBHOOK_SECRET"
    ):
        secret.get()


def test_both_ways_configured_at_once_is_an_error() -> None:
    secret = SecretSetting("STRIPE_WEBHOOK_SECRET", "whsec_a", "STRIPE_WEBHOOK_SECRET_PARAM", "/x")
    with pytest.raises(ConfigurationError, match="set only one"):
        secret.get()


def test_a_secret_given_by_value_is_used_as_it_is_and_never_shown() -> None:
    secret = SecretSetting("STRIPE_WEBHOOK_SECRET", "whsec_local", "STRIPE_WEBHOOK_SECRET_PARAM", "")
    assert secret.get() == "whsec_local"
    assert "whsec" not in repr(secret)
    assert "STRIPE_WEBHOOK_SECRET" in repr(secret)


def test_an_empty_parameter_is_a_configuration_error(ssm: Any) -> None:
    ssm.put_parameter(Name="/blank/stripe", Value=" ", Type="SecureString")
    secret = SecretSetting(
        "STRIPE_WEBHOOK_SECRET", "", "STRIPE_WEBHOOK_SECRET_PARAM", "/blank/stripe", ssm=ssm
    )
    with pytest.raises(ConfigurationError, match="is empty"):
        secret.get()
