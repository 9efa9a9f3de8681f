"""`OidcVerifier` against a Cognito-shaped issuer serving its JWKS on a loopback socket.

The forged-token table mirrors the Firebase path's (`realtime/tests/test_auth.py`); keys are
fetched over HTTP by PyJWT's `PyJWKClient`, as from Cognito, Auth0 or Keycloak.
"""

from __future__ import annotations

import functools
import time
import uuid
from typing import Any

import pytest
from chalice_realtime import AuthUnavailable, InvalidToken, OidcVerifier
from chalice_realtime.settings import ConfigurationError, RealtimeSettings
from chalice_realtime.testing.firebase import BAD_TOKENS
from chalice_realtime.testing.oidc import (
    CLIENT_ID,
    OIDC_BAD_TOKENS,
    OTHER_CLIENT_ID,
    IssuerKey,
    LocalIssuer,
    OidcTokens,
)
from hypothesis import given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.requires_extra("oidc")


def verifier_of(issuer: LocalIssuer, **options: Any) -> OidcVerifier:
    """A verifier of `issuer`'s tokens for CLIENT_ID, finding the JWKS through discovery."""
    options.setdefault("token_uses", ("id",))
    return OidcVerifier(issuer.issuer, [CLIENT_ID], **options)


# ---------------------------------------------------------------- what is accepted


def test_a_cognito_id_token_verifies_to_its_sub(local_issuer: LocalIssuer, oidc_tokens: OidcTokens) -> None:
    assert verifier_of(local_issuer).verify(oidc_tokens.id_token("alice")) == "alice"


def test_a_cognito_access_token_is_checked_by_client_id(
    local_issuer: LocalIssuer, oidc_tokens: OidcTokens
) -> None:
    verifier = verifier_of(local_issuer, token_uses=("id", "access"))
    assert verifier.verify(oidc_tokens.access_token("alice")) == "alice"
    with pytest.raises(InvalidToken, match=r"wrong audience \(client_id\)"):
        verifier.verify(oidc_tokens.access_token("alice", client_id=OTHER_CLIENT_ID))
    # Claims of another type than the issuer's (a list where a string belongs) are refused, not a crash.
    with pytest.raises(InvalidToken, match=r"wrong audience \(client_id\)"):
        verifier.verify(oidc_tokens.access_token("alice", client_id=[CLIENT_ID]))
    with pytest.raises(InvalidToken, match="token use not accepted"):
        verifier.verify(oidc_tokens.access_token("alice", token_use=["access"]))
    # An `aud` naming the client does not stand in for the access token's `client_id`.
    with pytest.raises(InvalidToken, match=r"wrong audience \(client_id\)"):
        verifier.verify(oidc_tokens.access_token("alice", client_id=None, aud=CLIENT_ID))
    # An ID token's audience is its `aud`, never `client_id`.
    with pytest.raises(InvalidToken, match="wrong audience"):
        verifier.verify(oidc_tokens.id_token("alice", aud=OTHER_CLIENT_ID, client_id=CLIENT_ID))


def test_access_tokens_only_refuses_id_tokens(local_issuer: LocalIssuer, oidc_tokens: OidcTokens) -> None:
    verifier = verifier_of(local_issuer, token_uses=("access",))
    assert verifier.verify(oidc_tokens.access_token("alice")) == "alice"
    with pytest.raises(InvalidToken, match="token use not accepted"):
        verifier.verify(oidc_tokens.id_token("alice"))


def test_tokens_without_token_use_are_checked_by_audience(
    local_issuer: LocalIssuer, oidc_tokens: OidcTokens
) -> None:
    # Auth0 and Keycloak set no `token_use`: `aud` (a string or a list) must name an accepted audience.
    verifier = verifier_of(local_issuer)
    assert verifier.verify(oidc_tokens.generic("alice")) == "alice"
    assert (
        verifier.verify(oidc_tokens.generic("alice", aud=["https://api.example.com", CLIENT_ID])) == "alice"
    )
    with pytest.raises(InvalidToken, match="wrong audience"):
        verifier.verify(oidc_tokens.generic("alice", aud=["https://api.example.com"]))
    with pytest.raises(InvalidToken, match="wrong audience"):
        verifier.verify(oidc_tokens.generic("alice", aud=[["nested", CLIENT_ID]]))


def test_an_es256_key_verifies_and_a_token_cannot_pick_another_algorithm_for_it(
    local_issuer: LocalIssuer,
) -> None:
    ec_key = IssuerKey.ec("oidc-ec-kid")
    local_issuer.keys.append(ec_key)
    tokens = OidcTokens(local_issuer.issuer, ec_key)
    verifier = verifier_of(local_issuer)
    assert verifier.verify(tokens.id_token("alice")) == "alice"
    # The RSA key's kid on an ES256 token: PyJWT binds each published key to its algorithm.
    with pytest.raises(InvalidToken):
        verifier.verify(tokens.id_token("alice", kid="oidc-kid-1"))


# ---------------------------------------------------------------- what is refused


def test_the_table_covers_the_firebase_cases() -> None:
    # Every forged-token case of the Firebase path has its OIDC counterpart (same name).
    assert set(BAD_TOKENS) - {"empty sub"} <= set(OIDC_BAD_TOKENS)
    assert "empty sub" in OIDC_BAD_TOKENS


@pytest.mark.parametrize("case", OIDC_BAD_TOKENS)
def test_every_forged_or_broken_token_is_refused_with_its_reason(
    case: str, local_issuer: LocalIssuer, oidc_tokens: OidcTokens, oidc_attacker_key: IssuerKey
) -> None:
    make, reason = OIDC_BAD_TOKENS[case]
    verifier = verifier_of(local_issuer)
    assert verifier.verify(oidc_tokens.id_token("alice")) == "alice"  # the control, same verifier
    token = make(oidc_tokens, oidc_attacker_key)
    with pytest.raises(InvalidToken) as refused:
        verifier.verify(token)
    assert str(refused.value) == reason
    assert token not in str(refused.value)


def test_tokens_refused_on_their_face_fetch_nothing(
    local_issuer: LocalIssuer, oidc_tokens: OidcTokens, oidc_attacker_key: IssuerKey
) -> None:
    # Garbage, `alg: none`, HS256 and kid-less tokens never make the verifier reach the issuer.
    verifier = verifier_of(local_issuer)
    for case in ("not a jwt", "garbage segments", "alg none", "HS256 keyed with the public key", "no kid"):
        with pytest.raises(InvalidToken):
            verifier.verify(OIDC_BAD_TOKENS[case][0](oidc_tokens, oidc_attacker_key))
    with pytest.raises(InvalidToken, match="no token"):
        verifier.verify("")
    assert local_issuer.requests == {}


# ---------------------------------------------------------------- keys: discovery, caching, rotation


def test_keys_are_discovered_and_fetched_once_for_many_verifications(
    local_issuer: LocalIssuer, oidc_tokens: OidcTokens
) -> None:
    verifier = verifier_of(local_issuer)
    for n in range(25):
        assert verifier.verify(oidc_tokens.id_token(f"user-{n}")) == f"user-{n}"
    assert local_issuer.requests == {local_issuer.discovery_path: 1, local_issuer.jwks_path: 1}


def test_a_configured_jwks_url_skips_discovery(local_issuer: LocalIssuer, oidc_tokens: OidcTokens) -> None:
    verifier = verifier_of(local_issuer, jwks_url=local_issuer.jwks_url)
    assert verifier.verify(oidc_tokens.id_token("alice")) == "alice"
    assert local_issuer.requests == {local_issuer.jwks_path: 1}


def test_a_rotated_key_is_fetched_on_first_sight_and_a_withdrawn_one_stops_verifying(
    local_issuer: LocalIssuer, oidc_tokens: OidcTokens, issuer_key: IssuerKey
) -> None:
    verifier = verifier_of(local_issuer, cooldown=0)
    old_token = oidc_tokens.id_token("alice")
    assert verifier.verify(old_token) == "alice"
    new_key = IssuerKey.rsa("oidc-kid-2")
    local_issuer.keys = [new_key]  # the issuer rotates: publishes the new key, withdraws the old one
    assert verifier.verify(OidcTokens(local_issuer.issuer, new_key).id_token("bob")) == "bob"
    assert local_issuer.requests[local_issuer.jwks_path] == 2  # the unknown kid refetched the set once
    with pytest.raises(InvalidToken, match="unknown signing key"):
        verifier.verify(old_token)


def test_made_up_kids_refetch_the_keys_at_most_once_per_cooldown(
    local_issuer: LocalIssuer, oidc_tokens: OidcTokens, oidc_attacker_key: IssuerKey
) -> None:
    cooldown = 2.0  # wide enough for a loaded machine: the floods below take milliseconds
    made_up = [oidc_tokens.id_token("alice", key=oidc_attacker_key, kid=uuid.uuid4().hex) for _ in range(40)]
    verifier = verifier_of(local_issuer, cooldown=cooldown)
    assert verifier.verify(oidc_tokens.id_token("alice")) == "alice"

    def flood(tokens: list[str]) -> None:
        for token in tokens:
            with pytest.raises(InvalidToken, match="unknown signing key"):
                verifier.verify(token)

    flood(made_up[:20])  # right after the first fetch: within the cooldown, no refetch at all
    assert local_issuer.requests[local_issuer.jwks_path] == 1
    time.sleep(cooldown + 0.1)
    flood(made_up[20:])  # after it: the first made-up kid refetches, the other 19 do not
    assert local_issuer.requests[local_issuer.jwks_path] == 2
    assert verifier.verify(oidc_tokens.id_token("bob")) == "bob"


def test_the_key_set_is_reread_after_its_lifespan(local_issuer: LocalIssuer, oidc_tokens: OidcTokens) -> None:
    lifespan = 2.0
    token, replacement = oidc_tokens.id_token("alice"), IssuerKey.rsa("oidc-kid-2")
    verifier = verifier_of(local_issuer, lifespan=lifespan)
    assert verifier.verify(token) == "alice"
    local_issuer.keys = [replacement]  # the old key withdrawn
    assert verifier.verify(token) == "alice"  # still the cached set
    time.sleep(lifespan + 0.1)
    with pytest.raises(InvalidToken, match="unknown signing key"):
        verifier.verify(token)
    assert local_issuer.requests[local_issuer.jwks_path] == 2


# ---------------------------------------------------------------- the issuer unreachable


def test_an_issuer_that_does_not_listen_is_unavailable_not_a_refusal(
    local_issuer: LocalIssuer, oidc_tokens: OidcTokens
) -> None:
    token = oidc_tokens.id_token("alice")
    local_issuer.stop()
    with pytest.raises(AuthUnavailable, match="discovery document"):
        verifier_of(local_issuer).verify(token)
    with pytest.raises(AuthUnavailable, match="cannot fetch the token signing keys"):
        verifier_of(local_issuer, jwks_url=local_issuer.jwks_url).verify(token)


@pytest.mark.parametrize("fault", ["down", "garbage"])
def test_a_jwks_endpoint_answering_an_error_or_html_is_unavailable_until_it_recovers(
    fault: str, local_issuer: LocalIssuer, oidc_tokens: OidcTokens
) -> None:
    verifier = verifier_of(local_issuer, jwks_url=local_issuer.jwks_url)
    setattr(local_issuer, fault, True)
    with pytest.raises(AuthUnavailable, match="cannot fetch the token signing keys"):
        verifier.verify(oidc_tokens.id_token("alice"))
    setattr(local_issuer, fault, False)
    assert verifier.verify(oidc_tokens.id_token("alice")) == "alice"  # a failure is not cached


def test_a_failed_discovery_is_remembered_for_the_cooldown_then_retried(
    local_issuer: LocalIssuer, oidc_tokens: OidcTokens
) -> None:
    """Within 30 s of a failed discovery, tokens are answered AuthUnavailable at once (no fetch, no wait of up
    to 5 s each); after it, the next token tries again."""
    now = [1000.0]
    verifier = verifier_of(local_issuer, clock=lambda: now[0])
    local_issuer.down = True
    with pytest.raises(AuthUnavailable, match="discovery document"):
        verifier.verify(oidc_tokens.id_token("alice"))
    assert local_issuer.requests[local_issuer.discovery_path] == 1
    local_issuer.down = False
    now[0] += 29
    with pytest.raises(AuthUnavailable, match="discovery document"):
        verifier.verify(oidc_tokens.id_token("alice"))
    assert local_issuer.requests[local_issuer.discovery_path] == 1  # not fetched again
    now[0] += 2
    assert verifier.verify(oidc_tokens.id_token("alice")) == "alice"
    assert local_issuer.requests[local_issuer.discovery_path] == 2


def test_cached_keys_keep_verifying_while_the_issuer_is_down(
    local_issuer: LocalIssuer, oidc_tokens: OidcTokens
) -> None:
    verifier = verifier_of(local_issuer)
    assert verifier.verify(oidc_tokens.id_token("alice")) == "alice"
    local_issuer.stop()
    assert verifier.verify(oidc_tokens.id_token("bob")) == "bob"


def test_a_discovery_document_naming_another_issuer_is_not_trusted(
    local_issuer: LocalIssuer, oidc_tokens: OidcTokens
) -> None:
    # OpenID Connect Discovery: the document must name the issuer it was fetched for.
    verifier = OidcVerifier(local_issuer.issuer + "-other", [CLIENT_ID])
    local_issuer.discovery_path = (
        f"/{local_issuer.issuer.rsplit('/', 1)[1]}-other/.well-known/openid-configuration"
    )
    with pytest.raises(AuthUnavailable, match="names another issuer"):
        verifier.verify(oidc_tokens.id_token("alice"))
    assert local_issuer.jwks_path not in local_issuer.requests


# ---------------------------------------------------------------- settings


COGNITO = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123"


def test_oidc_settings_are_read_and_choose_the_oidc_verifier() -> None:
    from chalice_realtime import Realtime

    settings = RealtimeSettings.from_env(
        {
            "AUTH_PROVIDER": "oidc",
            "OIDC_ISSUER": COGNITO,
            "OIDC_AUDIENCE": "client-a, client-b",
            "OIDC_TOKEN_USE": "access",
            "OIDC_JWKS_URL": COGNITO + "/.well-known/jwks.json",
        }
    )
    assert settings.auth_provider == "oidc"
    assert settings.oidc_audiences == ("client-a", "client-b")
    assert settings.oidc_token_uses == ("access",)
    verifier = Realtime(settings).verifier
    assert isinstance(verifier, OidcVerifier)
    assert (verifier.issuer, verifier.audiences, verifier.token_uses) == (
        COGNITO,
        frozenset({"client-a", "client-b"}),
        frozenset({"access"}),
    )


def test_firebase_stays_the_default_provider() -> None:
    from chalice_realtime import FirebaseVerifier, Realtime

    settings = RealtimeSettings.from_env({"FIREBASE_PROJECT_ID": "acme"})
    assert settings.auth_provider == "firebase"
    assert isinstance(Realtime(settings).verifier, FirebaseVerifier)
    assert RealtimeSettings.from_env(
        {"AUTH_PROVIDER": "oidc", "OIDC_ISSUER": COGNITO, "OIDC_AUDIENCE": "a"}
    ).oidc_token_uses == ("id", "access")


@pytest.mark.parametrize(
    "env, message",
    [
        ({"AUTH_PROVIDER": "cognito"}, "AUTH_PROVIDER must be one of firebase, oidc, not 'cognito'"),
        ({"AUTH_PROVIDER": "oidc", "OIDC_AUDIENCE": "a"}, "OIDC_ISSUER must be set"),
        ({"AUTH_PROVIDER": "oidc", "OIDC_ISSUER": COGNITO}, "OIDC_AUDIENCE must be set"),
        (
            {"AUTH_PROVIDER": "oidc", "OIDC_ISSUER": COGNITO, "OIDC_AUDIENCE": " , "},
            "OIDC_AUDIENCE must be set",
        ),
        (
            {"AUTH_PROVIDER": "oidc", "OIDC_ISSUER": "http://idp.example.com", "OIDC_AUDIENCE": "a"},
            "OIDC_ISSUER 'http://idp.example.com': it must be an https:// URL",
        ),
        (
            {"AUTH_PROVIDER": "oidc", "OIDC_ISSUER": "cognito", "OIDC_AUDIENCE": "a"},
            "OIDC_ISSUER 'cognito': it must be an https:// URL",
        ),
        (
            {
                "AUTH_PROVIDER": "oidc",
                "OIDC_ISSUER": COGNITO,
                "OIDC_AUDIENCE": "a",
                "OIDC_JWKS_URL": "file:///etc/passwd",
            },
            "OIDC_JWKS_URL 'file:///etc/passwd': it must be an https:// URL",
        ),
        (
            {
                "AUTH_PROVIDER": "oidc",
                "OIDC_ISSUER": COGNITO,
                "OIDC_AUDIENCE": "a",
                "OIDC_TOKEN_USE": "id,refresh",
            },
            "OIDC_TOKEN_USE must be id, access or both",
        ),
        (
            {"OIDC_ISSUER": COGNITO, "OIDC_AUDIENCE": "a"},
            "OIDC_ISSUER, OIDC_AUDIENCE set but AUTH_PROVIDER is 'firebase'",
        ),
    ],
)
def test_bad_oidc_settings_are_refused_with_the_variable_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        RealtimeSettings.from_env(env)
    assert message in str(refused.value)


def test_an_issuer_on_this_machine_may_use_http() -> None:
    # Keycloak in a container, the tests' issuer: nothing crosses a network.
    for issuer in ("http://127.0.0.1:8080/realms/demo", "http://localhost:8080/realms/demo"):
        env = {"AUTH_PROVIDER": "oidc", "OIDC_ISSUER": issuer, "OIDC_AUDIENCE": "a"}
        assert RealtimeSettings.from_env(env).oidc_issuer == issuer


# ---------------------------------------------------------------- anything else


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=150, derandomize=True, database=None, deadline=None)
@given(
    header=st.fixed_dictionaries(
        {},
        optional={
            "alg": st.sampled_from(["RS256", "ES256", "HS256", "none", ""]) | JSON_VALUES,
            "kid": st.sampled_from(["oidc-kid-1", ""]) | JSON_VALUES,
            "typ": JSON_VALUES,
        },
    ),
    payload=st.dictionaries(
        st.sampled_from(["iss", "sub", "aud", "exp", "iat", "nbf", "token_use", "client_id"]), JSON_VALUES
    )
    | JSON_VALUES,
    signature=st.binary(max_size=300),
)
def test_any_token_shape_is_refused_as_invalid_and_nothing_else(
    header: Any, payload: Any, signature: bytes
) -> None:
    # Whatever a client sends, the verifier answers InvalidToken: never another exception (a 500).
    import base64
    import json

    def segment(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    token = ".".join(
        segment(part) for part in (json.dumps(header).encode(), json.dumps(payload).encode(), signature)
    )
    with pytest.raises(InvalidToken):
        fuzz_verifier().verify(token)


ABSENT = object()
CLAIMS = ("iss", "sub", "aud", "client_id", "token_use", "exp", "iat", "nbf")


@settings(max_examples=200, derandomize=True, database=None, deadline=None)
@given(
    token_use=st.sampled_from(["id", "access"]),
    bent=st.dictionaries(st.sampled_from(CLAIMS), st.just(ABSENT) | JSON_VALUES, min_size=1, max_size=2),
)
def test_any_claims_signed_by_the_issuer_verify_or_are_refused_as_invalid(
    token_use: str, bent: dict[str, Any]
) -> None:
    # Even the issuer's own signature over a valid token with one or two claims removed or of any
    # type never makes the verifier crash (a 500): it answers the subject or InvalidToken.
    verifier, tokens = fuzz_verifier(), fuzz_tokens()
    claims = tokens.claims("alice", aud=CLIENT_ID, client_id=CLIENT_ID, token_use=token_use)
    claims.update(bent)
    claims = {name: value for name, value in claims.items() if value is not ABSENT}
    try:
        subject = verifier.verify(tokens.sign(claims))
    except InvalidToken:
        return
    assert subject == claims["sub"] and isinstance(subject, str) and subject


@functools.cache
def fuzz_tokens() -> OidcTokens:
    return OidcTokens(fuzz_verifier().issuer, FUZZ_KEY)


FUZZ_KEY = IssuerKey.rsa("oidc-kid-1")


@functools.cache
def fuzz_verifier() -> OidcVerifier:
    """One issuer and verifier for every example (hypothesis reuses no function-scoped fixture)."""
    issuer = LocalIssuer([FUZZ_KEY])
    return OidcVerifier(issuer.issuer, [CLIENT_ID], token_uses=("id", "access"))
