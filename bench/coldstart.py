"""Cold start: what `import app` costs beyond Chalice and boto3, and the first `$connect`.

    python -m bench.coldstart              # 9 runs of each import, then 5 fresh processes' $connect

1. Median wall time of `python -c "import app"` against `python -c "import chalice, boto3"`
   (same interpreter, runs interleaved), with `python -c "pass"` for the interpreter itself,
   and `-X importtime`'s account of what app imports beyond those two.
2. `$connect` in a fresh process: the first invocation (token verification included:
   firebase-admin imported on first use, certificates fetched - served locally by
   `responses` - and parsed, boto3 client built) against the second, warm one. DynamoDB is
   moto's server in another process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

from bench.harness import AWS_ENV, PYTHON, ROOT, CertificateServer, machine, moto_server, table, verdict

APP_ENV = {
    **AWS_ENV,
    "APP_STAGE": "dev",
    "FIREBASE_PROJECT_ID": "bench-project",
    "WEBSOCKET_ENDPOINT": "https://abc123.execute-api.us-east-1.amazonaws.com/api",
    "CONNECTIONS_TABLE": "bench-cold-connections",
    "JOBS_TABLE": "bench-cold-jobs",
    "MESSAGES_TABLE": "bench-cold-messages",
    "PAYMENTS_TABLE": "bench-cold-payments",
    "RATE_LIMITS_TABLE": "bench-cold-rate-limits",
    "TOPICS_TABLE": "bench-cold-topics",
    "ROOMS_TABLE": "bench-cold-rooms",
    "JOBS_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:bench-cold-jobs",
}
IMPORTS = {
    "python -c pass": "pass",
    "import chalice, boto3": "import chalice, boto3",
    "import app": "import app",
}


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FIREBASE_"))}
    return {**env, **APP_ENV, **(extra or {})}


def time_import(code: str) -> float:
    started = time.perf_counter()
    subprocess.run([PYTHON, "-c", code], cwd=ROOT, env=clean_env(), check=True)
    return time.perf_counter() - started


def importtime(code: str) -> dict[str, tuple[int, int]]:
    """module -> (self us, cumulative us) from `python -X importtime`."""
    out = subprocess.run(
        [PYTHON, "-X", "importtime", "-c", code], cwd=ROOT, env=clean_env(), capture_output=True, text=True
    )
    modules: dict[str, tuple[int, int]] = {}
    for line in out.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative_us, name = (part.strip() for part in line[len("import time:") :].split("|"))
        modules[name.strip()] = (int(self_us), int(cumulative_us))
    return modules


def beyond_baseline() -> list[list[str]]:
    """The modules `import app` loads that `import chalice, boto3` does not: the 12 costliest by self time."""
    app_modules = importtime("import app")
    base = set(importtime("import chalice, boto3"))
    extra = {name: times for name, times in app_modules.items() if name not in base}
    ranked = sorted(extra.items(), key=lambda item: -item[1][0])[:12]
    total = sum(self_us for self_us, _ in extra.values())
    rows = [
        [name, f"{self_us / 1000:.1f}", f"{cumulative_us / 1000:.1f}"]
        for name, (self_us, cumulative_us) in ranked
    ]
    return [*rows, [f"all {len(extra)} modules", f"{total / 1000:.1f}", ""]]


# ---------------------------------------------------------------- $connect in a fresh process


def connect_worker() -> dict[str, float]:
    """Runs in a fresh process: import app, then two $connect invocations, timed."""
    from chalice_realtime.testing.events import websocket_event
    from chalice_realtime.testing.firebase import SigningKey, TokenFactory

    # Test fixtures, not measured: a signing key, two tokens, and Google's certificates served locally.
    key = SigningKey.generate("bench-kid")
    tokens = TokenFactory(APP_ENV["FIREBASE_PROJECT_ID"], key)
    first_token, second_token = tokens.mint("alice"), tokens.mint("bob")
    certs = CertificateServer(key).__enter__()

    def invoke(handler: Any, connection_id: str, token: str) -> None:
        event = websocket_event(
            "$connect", connection_id, headers={"Sec-WebSocket-Protocol": f"bearer, {token}"}
        )
        response = handler(event, None)
        assert response["statusCode"] == 200, response

    timings: dict[str, float] = {}
    started = time.perf_counter()
    import app

    timings["import app"] = time.perf_counter() - started
    for label, connection_id, token in (
        ("first $connect", "cold-1", first_token),
        ("warm $connect", "cold-2", second_token),
    ):
        started, cpu = time.perf_counter(), time.process_time()
        invoke(app.app.handler_map["ws_connect"], connection_id, token)
        timings[label] = time.perf_counter() - started
        timings[label + " cpu"] = time.process_time() - cpu
    certs.__exit__()
    return timings


def connect_runs(runs: int) -> list[dict[str, float]]:
    import boto3

    from infra.tables import create_tables

    results = []
    with moto_server() as url:
        env = {"AWS_ENDPOINT_URL": url}
        os.environ.update({**APP_ENV, **env})
        create_tables(boto3.client("dynamodb"), {k: v for k, v in APP_ENV.items() if k.endswith("_TABLE")})
        for _ in range(runs):
            out = subprocess.run(
                [PYTHON, "-m", "bench.coldstart", "--connect-worker"],
                cwd=ROOT,
                env=clean_env(env),
                check=True,
                capture_output=True,
                text=True,
            )
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=9, help="runs of each import (9)")
    parser.add_argument("--connect-runs", type=int, default=5, help="fresh processes for $connect (5)")
    parser.add_argument("--connect-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.connect_worker:
        print(json.dumps(connect_worker()))
        return

    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.1f} (shared machine)\n", flush=True)
    samples: dict[str, list[float]] = {label: [] for label in IMPORTS}
    for code in IMPORTS.values():
        time_import(code)  # warm the page cache once
    for _ in range(args.runs):
        for label, code in IMPORTS.items():
            samples[label].append(time_import(code))
    medians = {label: statistics.median(values) for label, values in samples.items()}
    interpreter = medians["python -c pass"]
    print(f"### Import, median of {args.runs} fresh processes\n")
    print(
        table(
            ["command", "process ms", "import ms (minus `python -c pass`)"],
            [
                [label, f"{medians[label] * 1000:.0f}", f"{(medians[label] - interpreter) * 1000:.0f}"]
                for label in IMPORTS
            ],
        )
    )
    ratio = medians["import app"] / medians["import chalice, boto3"]
    import_ratio = (medians["import app"] - interpreter) / (medians["import chalice, boto3"] - interpreter)
    print(
        f"\nimport app / import chalice, boto3: {ratio:.2f}x whole process, {import_ratio:.2f}x imports only"
    )
    print("\n### What `import app` loads beyond chalice and boto3 (-X importtime)\n")
    print(table(["module", "self ms", "cumulative ms"], beyond_baseline()))

    runs = connect_runs(args.connect_runs)
    print(f"\n### $connect in a fresh process, median of {args.connect_runs} processes\n")
    print(
        table(
            ["step", "wall ms", "CPU ms"],
            [
                [
                    step,
                    f"{statistics.median(r[step] for r in runs) * 1000:.0f}",
                    f"{statistics.median(r[step + ' cpu'] for r in runs) * 1000:.0f}"
                    if step != "import app"
                    else "",
                ]
                for step in ("import app", "first $connect", "warm $connect")
            ],
        )
    )
    first = statistics.median(r["first $connect"] for r in runs)
    warm = statistics.median(r["warm $connect"] for r in runs)
    print(f"\nfirst / warm $connect: {first / warm:.1f}x")
    print("\n### Targets\n")
    print(
        table(
            ["target", "measured", ""],
            [["import app <= 1.3x import chalice, boto3", f"{ratio:.2f}x", verdict(ratio <= 1.3)]],
        )
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
