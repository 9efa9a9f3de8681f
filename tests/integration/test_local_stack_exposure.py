"""A web page the developer visits cannot drive the local stack; programs on the machine still can.

Each test sends, over real sockets to the running stack, what a browser sends for
another site's page (`Origin`, `Sec-Fetch-Site`, a `text/plain` body), then checks
that nothing happened, and that the same request from a program (no `Origin`)
is served, so the refusal is the rule at work and not a broken endpoint.
"""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from typing import Any

import pytest
import requests

from testsupport.localstack import PORT_NAMES, PROJECT_ROOT, LocalStack, free_port, port_is_free

pytestmark = pytest.mark.integration

EVIL = "http://evil.example"
FROM_EVIL = {"Origin": EVIL, "Sec-Fetch-Site": "cross-site"}


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def payments_of(stack: LocalStack, token: str) -> list[dict[str, Any]]:
    answer = requests.get(stack.rest_url + "/payments", headers=auth(token), timeout=10)
    answer.raise_for_status()
    return list(answer.json()["payments"])


def fault_rules(stack: LocalStack) -> list[dict[str, Any]]:
    return list(requests.get(stack.management_url + "/_faults", timeout=5).json()["rules"])


# ---------------------------------------------------------------- moto (DynamoDB, SNS)


def test_moto_shares_nothing_with_another_sites_page(local_stack: LocalStack) -> None:
    data = local_stack.aws_url + "/moto-api/data.json"
    read = requests.get(data, headers=FROM_EVIL, timeout=10)
    assert read.status_code == 403
    assert "Access-Control-Allow-Origin" not in read.headers
    # The preflight a page needs before calling DynamoDB (X-Amz-Target) gets no permission either.
    preflight = requests.options(
        local_stack.aws_url + "/",
        headers={
            "Origin": EVIL,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-amz-target,content-type",
        },
        timeout=10,
    )
    assert not {h.lower() for h in preflight.headers} & {
        "access-control-allow-origin",
        "access-control-allow-headers",
        "access-control-allow-methods",
    }
    # An <img> or <script> of another page sends no Origin, but the browser marks it cross-site.
    assert requests.get(data, headers={"Sec-Fetch-Site": "cross-site"}, timeout=10).status_code == 403
    assert requests.get(data, timeout=10).status_code == 200  # a program on this machine
    # moto's own dashboard page may read it, and even it gets no CORS header: moto's global CORS is off.
    own = requests.get(data, headers={"Origin": local_stack.aws_url}, timeout=10)
    assert own.status_code == 200 and "Access-Control-Allow-Origin" not in own.headers


def test_moto_refuses_a_write_another_page_sends_without_asking(local_stack: LocalStack) -> None:
    """A text/plain POST needs no preflight: enough to reset moto (`/moto-api/reset`) or change its config.

    Probed with the config (`batch.use_docker`, unused here), which a program may set back.
    """
    url = local_stack.aws_url + "/moto-api/config"
    before = requests.get(url, timeout=10).json()["batch"]["use_docker"]
    change = json.dumps({"batch": {"use_docker": not before}})
    as_text = {**FROM_EVIL, "Content-Type": "text/plain"}
    assert requests.post(url, data=change, headers=as_text, timeout=10).status_code == 403
    assert requests.get(url, timeout=10).json()["batch"]["use_docker"] is before
    reset = requests.post(local_stack.aws_url + "/moto-api/reset", data="", headers=as_text, timeout=10)
    assert reset.status_code == 403
    assert (
        local_stack.environment["CONNECTIONS_TABLE"]
        in local_stack.aws_client("dynamodb").list_tables()["TableNames"]
    )
    # The same write from a program goes through: what the page was refused is real.
    try:
        assert requests.post(url, data=change, timeout=10).json()["batch"]["use_docker"] is (not before)
    finally:
        requests.post(url, data=json.dumps({"batch": {"use_docker": before}}), timeout=10)


# ---------------------------------------------------------------- the demo page's test payment


def test_a_test_payment_from_another_page_is_refused_and_records_nothing(local_stack: LocalStack) -> None:
    uid, token = local_stack.sign_up()
    url = local_stack.web_url + "/dev/test-payment"
    body = json.dumps({"user_id": uid, "amount": 500, "currency": "usd"})
    # What a page can send to another origin without a preflight: a text/plain POST (and a form).
    as_text = {**FROM_EVIL, "Content-Type": "text/plain;charset=UTF-8"}
    assert requests.post(url, data=body, headers=as_text, timeout=30).status_code == 403
    as_form = {**FROM_EVIL, "Content-Type": "application/x-www-form-urlencoded"}
    assert requests.post(url, data={"user_id": uid}, headers=as_form, timeout=30).status_code == 403
    # JSON from another origin is refused too, whatever the browser would do with its preflight.
    as_json = {"Origin": EVIL, "Content-Type": "application/json"}
    assert requests.post(url, data=body, headers=as_json, timeout=30).status_code == 403
    # The demo page itself must send JSON: text/plain from it is refused as well.
    own_text = {"Origin": local_stack.web_url, "Content-Type": "text/plain"}
    refused = requests.post(url, data=body, headers=own_text, timeout=30)
    assert refused.status_code == 415 and "application/json" in refused.json()["message"]
    assert payments_of(local_stack, token) == []
    # The demo page's own request is served: the refusals above were the rule, not a broken route.
    own_json = {"Origin": local_stack.web_url, "Content-Type": "application/json"}
    assert requests.post(url, data=body, headers=own_json, timeout=30).status_code == 200
    assert [p["amount"] for p in payments_of(local_stack, token)] == [500]


# ---------------------------------------------------------------- the gateway: fault rules, Management API


def test_fault_rules_cannot_be_set_by_another_page(local_stack: LocalStack) -> None:
    url = local_stack.management_url + "/_faults"
    plan = json.dumps({"rules": [{"status": 500}]})
    for method in ("PUT", "POST"):
        as_text = {**FROM_EVIL, "Content-Type": "text/plain"}
        assert requests.request(method, url, data=plan, headers=as_text, timeout=5).status_code == 403
        as_json = {"Origin": EVIL, "Content-Type": "application/json"}
        assert requests.request(method, url, data=plan, headers=as_json, timeout=5).status_code == 403
        # Even from a program: a fault plan is JSON.
        text_from_a_program = {"Content-Type": "text/plain"}
        assert (
            requests.request(method, url, data=plan, headers=text_from_a_program, timeout=5).status_code
            == 415
        )
    assert requests.get(url, headers=FROM_EVIL, timeout=5).status_code == 403
    assert requests.delete(url, headers=FROM_EVIL, timeout=5).status_code == 403
    assert fault_rules(local_stack) == []


def test_the_management_api_refuses_another_page(local_stack: LocalStack) -> None:
    listed = requests.get(local_stack.management_url + "/_connections", headers=FROM_EVIL, timeout=5)
    assert listed.status_code == 403
    post = requests.post(
        local_stack.management_url + "/@connections/AnyConnection1=",
        data=b'{"event":"x"}',
        headers={**FROM_EVIL, "Content-Type": "text/plain"},
        timeout=5,
    )
    assert post.status_code == 403
    # boto3 (no Origin) gets the Management API's own answer: 410 for an unknown connection.
    from_program = requests.post(
        local_stack.management_url + "/@connections/AnyConnection1=", data=b"{}", timeout=5
    )
    assert from_program.status_code == 410


# ---------------------------------------------------------------- SNS deliveries into the job runner


def test_an_sns_delivery_cannot_be_injected_by_another_page(local_stack: LocalStack) -> None:
    events_url = local_stack.state()["urls"]["events"]
    topic = local_stack.environment["JOBS_TOPIC_ARN"].rsplit(":", 1)[1]
    # Harmless to deliver: a confirmation runs no handler, so the test can also send it from a "program".
    delivery = json.dumps(
        {"Type": "SubscriptionConfirmation", "TopicArn": local_stack.environment["JOBS_TOPIC_ARN"]}
    )
    as_text = {**FROM_EVIL, "Content-Type": "text/plain; charset=UTF-8"}
    refused = requests.post(f"{events_url}/sns/{topic}", data=delivery, headers=as_text, timeout=10)
    assert refused.status_code == 403
    assert requests.get(f"{events_url}/_health", headers=FROM_EVIL, timeout=10).status_code == 403
    # moto posts deliveries as SNS does: text/plain, no Origin.
    sns_like = {"Content-Type": "text/plain; charset=UTF-8"}
    served = requests.post(f"{events_url}/sns/{topic}", data=delivery, headers=sns_like, timeout=10)
    assert served.status_code == 200 and served.json() == {"confirmed": True}


def test_jobs_still_run_through_moto_sns_delivery(local_stack: LocalStack) -> None:
    """The refusals leave the real path alone: a job queued over REST is delivered by moto and runs."""
    import time

    _, token = local_stack.sign_up()
    queued = requests.post(
        local_stack.rest_url + "/jobs",
        json={"kind": "report", "params": {"seconds": 1}},
        headers=auth(token),
        timeout=10,
    )
    assert queued.status_code == 202, queued.text
    job_url = f"{local_stack.rest_url}/jobs/{queued.json()['job_id']}"
    deadline = time.monotonic() + 30
    status = ""
    while time.monotonic() < deadline and status != "succeeded":
        status = requests.get(job_url, headers=auth(token), timeout=10).json()["status"]
        time.sleep(0.2)
    assert status == "succeeded"


# ---------------------------------------------------------------- the state file and the listening address


def test_the_state_file_is_readable_by_its_owner_only(local_stack: LocalStack) -> None:
    mode = stat.S_IMODE(local_stack.state_file.stat().st_mode)
    assert mode == 0o600, oct(mode)
    assert local_stack.stripe_webhook_secret  # what the mode protects


def test_the_stack_refuses_to_listen_beyond_loopback_without_the_opt_in() -> None:
    ports = {name: free_port() for name in PORT_NAMES}
    started = subprocess.run(
        [
            sys.executable,
            "-m",
            "devserver",
            "--host",
            "0.0.0.0",
            *(f"--{n}-port={p}" for n, p in ports.items()),
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert started.returncode == 2, started.stdout + started.stderr
    assert "--allow-remote" in started.stderr and "unsigned tokens" in started.stderr
    assert all(port_is_free(port) for port in ports.values())
