"""Fan-out: `notify_users` to N connections, our aiohttp transport against two boto3 baselines.

    python -m bench.fanout                 # N = 10, 100, 1,000, 10,000; writes docs/fanout.png
    python -m bench.fanout --quick         # N up to 1,000, sequential up to 100 (a minute)

Setup, all on loopback: the Management API stand-in (bench/standin.py) in its own process
answers each POST after `--delay` (20 ms), 410 for 1 connection in 20; the rows live in
moto's DynamoDB server in another process (one table per N: moto's Query reads its whole
table, real DynamoDB's does not). Each N is one user holding N connections, so a run is
1 Query page (2 at 10,000) + N posts + the gone rows' batch deletes through the Notifier.

Each transport is measured in a worker process, warm (a first small notify opened its
connections, as in a warm Lambda): once free to use both cores, once pinned to one core
with `taskset -c 0` (what a 1,769 MB Lambda gets). The stand-ins sit on core 1. CPU is the
worker's process time (all its threads) per delivered frame.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.harness import (
    AWS_ENV,
    PYTHON,
    ROOT,
    machine,
    management_api_standin,
    moto_server,
    pin_prefix,
    table,
    verdict,
)

KINDS = ("aiohttp", "boto3-threads", "boto3-sequential")
LABELS = {
    "aiohttp": "aiohttp + SigV4 (ours)",
    "boto3-threads": "boto3, 64 threads",
    "boto3-sequential": "boto3, sequential loop",
}
CONCURRENCY = 64
GONE_EVERY = 20
USER = "fan"


def table_name(n: int) -> str:
    return f"bench-fanout-{n}"


def connection_id(n: int, i: int) -> str:
    # API Gateway ids look like "L0SM9cOFvHcCIhw=": the '=' is URL-quoted in the path, as on AWS.
    return f"c{n}-{i}=" + ("-gone" if i % GONE_EVERY == 0 else "")


def rows(n: int, only_gone: bool = False) -> list[dict[str, Any]]:
    return [
        {
            "connection_id": {"S": connection_id(n, i)},
            "user_id": {"S": USER},
            "connected_at": {"N": str(1_700_000_000_000 + i)},
            "expires_at": {"N": "4000000000"},
        }
        for i in range(n)
        if not only_gone or i % GONE_EVERY == 0
    ]


def put_rows(dynamodb: Any, name: str, items: list[dict[str, Any]]) -> None:
    for start in range(0, len(items), 25):
        requests = [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
        while requests:
            response = dynamodb.batch_write_item(RequestItems={name: requests})
            requests = response.get("UnprocessedItems", {}).get(name, [])


def load_tables(ns: list[int]) -> None:
    """Create one connections table per N (plus a small warm-up one) and fill it."""
    import boto3

    from infra.tables import create_tables

    dynamodb = boto3.client("dynamodb")
    for n in [3, *ns]:
        names = {
            "CONNECTIONS_TABLE": table_name(n),
            "JOBS_TABLE": "bench-jobs",
            "MESSAGES_TABLE": "bench-messages",
            "PAYMENTS_TABLE": "bench-payments",
        }
        create_tables(dynamodb, names)
        put_rows(dynamodb, table_name(n), rows(n))


# ---------------------------------------------------------------- the worker (one process per run)


def make_transport(kind: str, endpoint: str) -> Any:
    from chalicelib.transport import AiohttpTransport, Boto3ThreadPoolTransport

    if kind == "aiohttp":
        return AiohttpTransport(endpoint, concurrency=CONCURRENCY)
    if kind == "aiohttp-run-per-call":
        return AiohttpTransport(endpoint, concurrency=CONCURRENCY, persistent_loop=False)
    if kind == "boto3-threads":
        return Boto3ThreadPoolTransport(endpoint, concurrency=CONCURRENCY)
    if kind == "boto3-sequential":
        return Boto3ThreadPoolTransport(endpoint, concurrency=1)  # one worker thread: a plain loop
    raise ValueError(kind)


def measure(work: Callable[[], Any]) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    return result, time.perf_counter() - wall, time.process_time() - cpu


class DynamoDBClock:
    """Wall time spent inside DynamoDB calls, from botocore's before-call / after-call hooks.

    moto serializes a Query's items at about 1 ms each (real DynamoDB answers a 1 MB page in
    one round trip of a few ms), so the tables show that time apart from the fan-out itself.
    """

    def __init__(self, client: Any) -> None:
        self.seconds = 0.0
        self._started = 0.0
        client.meta.events.register("before-call.dynamodb.*", self._before)
        client.meta.events.register("after-call.dynamodb.*", self._after)

    def _before(self, **_: Any) -> None:
        self._started = time.perf_counter()

    def _after(self, **_: Any) -> None:
        self.seconds += time.perf_counter() - self._started


def worker(endpoint: str, ns: list[int], sequential_max: int, warm_calls: int) -> dict[str, Any]:
    import boto3
    from botocore.config import Config

    from chalicelib.aws import RETRIES
    from chalicelib.connections import ConnectionStore
    from chalicelib.notifier import Notifier

    # moto takes 10-20 s to answer a Query of 10,000 items (DynamoDB: one 1 MB page in a few ms),
    # beyond the app's 10 s read timeout: the same client settings otherwise.
    dynamodb = boto3.client(
        "dynamodb",
        config=Config(retries=RETRIES, max_pool_connections=32, connect_timeout=3, read_timeout=120),
    )
    raw = boto3.client("dynamodb")
    dynamodb_clock = DynamoDBClock(dynamodb)
    results: list[dict[str, Any]] = []
    for kind in KINDS:
        transport = make_transport(kind, endpoint)
        Notifier(ConnectionStore(table_name(3), dynamodb), transport).notify(USER, "bench-warm-up")
        for n in ns:
            if kind == "boto3-sequential" and n > sequential_max:
                continue
            notifier = Notifier(ConnectionStore(table_name(n), dynamodb), transport)
            dynamodb_clock.seconds = 0.0
            report, wall, cpu = measure(lambda: notifier.notify(USER, "bench-fanout"))  # noqa: B023
            put_rows(raw, table_name(n), rows(n, only_gone=True))  # the gone rows, for the next run
            results.append(
                {
                    "kind": kind,
                    "n": n,
                    "wall": wall,
                    "dynamodb": dynamodb_clock.seconds,
                    "fanout": wall - dynamodb_clock.seconds,
                    "cpu": cpu,
                    "delivered": report.delivered,
                    "gone": report.gone,
                    "failed": report.failed,
                }
            )
    # Many small notifies (a warm Lambda's usual day): background loop vs asyncio.run per call.
    small: list[dict[str, Any]] = []
    for kind in ("aiohttp", "aiohttp-run-per-call", "boto3-threads"):
        notifier = Notifier(ConnectionStore(table_name(3), dynamodb), make_transport(kind, endpoint))
        notifier.notify(USER, "bench-warm-up")
        _, wall, cpu = measure(lambda: [notifier.notify(USER, "bench-small") for _ in range(warm_calls)])  # noqa: B023
        small.append({"kind": kind, "wall": wall / warm_calls, "cpu": cpu / warm_calls})
    return {"fanout": results, "small": small}


def run_worker(pinned: bool, endpoint: str, dynamodb_url: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [
        *pin_prefix("0" if pinned else None),
        PYTHON,
        "-m",
        "bench.fanout",
        "--worker",
        endpoint,
        "--ns",
        ",".join(map(str, args.ns)),
        "--sequential-max",
        # Pinned, the sequential loop only repeats what the free run showed: keep the run short.
        str(min(args.sequential_max, 100) if pinned else args.sequential_max),
        "--warm-calls",
        str(args.warm_calls),
    ]
    env = {**os.environ, **AWS_ENV, "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_url}
    out = subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


# ---------------------------------------------------------------- report


def fanout_table(results: list[dict[str, Any]], delay: float) -> str:
    rows_out = []
    for r in results:
        ideal = r["n"] * delay / CONCURRENCY if r["kind"] != "boto3-sequential" else r["n"] * delay
        rows_out.append(
            [
                LABELS[r["kind"]],
                f"{r['n']:,}",
                f"{r['fanout'] * 1000:,.0f}",
                f"{r['fanout'] / max(ideal, 1e-9):.2f}x",
                f"{r['dynamodb'] * 1000:,.0f}",
                f"{r['cpu'] * 1000 / max(r['delivered'], 1):.3f}",
                f"{r['delivered'] / max(r['fanout'], 1e-9):,.0f}",
                f"{r['delivered']}/{r['gone']}/{r['failed']}",
            ]
        )
    return table(
        [
            "transport",
            "N",
            "fan-out ms",
            "vs ideal",
            "+ moto DynamoDB ms",
            "CPU ms/frame",
            "frames/s",
            "delivered/gone/failed",
        ],
        rows_out,
    )


def find(results: list[dict[str, Any]], kind: str, n: int) -> dict[str, Any] | None:
    return next((r for r in results if r["kind"] == kind and r["n"] == n), None)


def targets(free: dict[str, Any], pinned: dict[str, Any], delay: float) -> list[list[str]]:
    out: list[list[str]] = []
    ours, seq = find(free["fanout"], "aiohttp", 1000), find(free["fanout"], "boto3-sequential", 1000)
    if ours and seq:
        speedup = seq["fanout"] / ours["fanout"]
        out.append(["1,000 at 20 ms: >= 20x the sequential loop", f"{speedup:.0f}x", verdict(speedup >= 20)])
    if ours:
        ratio = ours["fanout"] / (1000 * delay / CONCURRENCY)
        out.append(
            [f"1,000: within 1.5x of ideal N x delay / {CONCURRENCY}", f"{ratio:.2f}x", verdict(ratio <= 1.5)]
        )
    for run_name, run in (("both cores", free), ("one core", pinned)):
        largest = max((r["n"] for r in run["fanout"] if r["kind"] == "boto3-threads"), default=0)
        a, t = find(run["fanout"], "aiohttp", largest), find(run["fanout"], "boto3-threads", largest)
        if a and t and a["delivered"] and t["delivered"]:
            share = (a["cpu"] / a["delivered"]) / (t["cpu"] / t["delivered"])
            out.append(
                [
                    f"CPU/frame <= 1/3 of 64 threads ({run_name}, N={largest:,})",
                    f"{share:.2f} ({1 / share:.1f}x less)",
                    verdict(share <= 1 / 3),
                ]
            )
    big = find(pinned["fanout"], "aiohttp", 10000)
    if big:
        out.append(
            ["10,000 from one pinned core < 5 s", f"{big['fanout']:.2f} s", verdict(big["fanout"] < 5)]
        )
    return out


def plot(free: dict[str, Any], pinned: dict[str, Any], delay: float, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5))
    colors = {"aiohttp": "tab:green", "boto3-threads": "tab:orange", "boto3-sequential": "tab:red"}
    for run, style, suffix in ((free, "-", "both cores"), (pinned, "--", "one core")):
        for kind in KINDS:
            points = sorted((r["n"], r["fanout"]) for r in run["fanout"] if r["kind"] == kind)
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, style, marker="o", color=colors[kind], label=f"{LABELS[kind]}, {suffix}")
    ns = sorted({r["n"] for r in free["fanout"]})
    ax.plot(
        ns, [n * delay / CONCURRENCY for n in ns], ":", color="grey", label=f"ideal N x delay / {CONCURRENCY}"
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("connections notified (N)")
    ax.set_ylabel("fan-out wall time (s), DynamoDB lookup excluded")
    ax.set_title(f"Fan-out, {delay * 1000:.0f} ms per post, 1 in {GONE_EVERY} gone (410)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ns", default="10,100,1000,10000", help="connection counts (10,100,1000,10000)")
    parser.add_argument("--delay", type=float, default=0.02, help="stand-in answer delay in s (0.02)")
    parser.add_argument("--sequential-max", type=int, default=1000, help="largest N for the sequential loop")
    parser.add_argument("--warm-calls", type=int, default=100, help="small notifies for the warm-call table")
    parser.add_argument("--quick", action="store_true", help="N up to 1,000, sequential up to 100")
    parser.add_argument(
        "--plot", default=str(ROOT / "docs" / "fanout.png"), help="PNG to write ('' for none)"
    )
    parser.add_argument("--worker", metavar="ENDPOINT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.ns = [int(n) for n in str(args.ns).split(",")]
    if args.quick:
        args.ns, args.sequential_max, args.warm_calls = [n for n in args.ns if n <= 1000], 100, 30
    if args.worker:
        print(json.dumps(worker(args.worker, args.ns, args.sequential_max, args.warm_calls)))
        return

    os.environ.update(AWS_ENV)
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.1f} at the start (shared machine)")
    print(
        f"stand-in delay {args.delay * 1000:.0f} ms, 1 connection in {GONE_EVERY} answers 410\n", flush=True
    )
    with management_api_standin(args.delay) as endpoint, moto_server() as dynamodb_url:
        os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = dynamodb_url
        started = time.monotonic()
        load_tables(args.ns)
        print(f"loaded {sum(args.ns):,} rows into moto in {time.monotonic() - started:.0f} s", flush=True)
        free = run_worker(False, endpoint, dynamodb_url, args)
        pinned = run_worker(True, endpoint, dynamodb_url, args)

    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    note = (
        f"(sequential loop only up to N = {args.sequential_max:,}: it takes N x {args.delay * 1000:.0f} ms)"
    )
    print(f"\n### Fan-out, free to use both cores {note}\n")
    print(fanout_table(free["fanout"], args.delay))
    print("\n### Fan-out, pinned to one core (taskset -c 0, as a 1,769 MB Lambda; sequential only to 100)\n")
    print(fanout_table(pinned["fanout"], args.delay))
    print(f"\n### Warm Lambda: {args.warm_calls} small notifies (1 Query + 3 posts each), per call\n")
    small_rows = [
        [label, run_name, f"{s['wall'] * 1000:.1f}", f"{s['cpu'] * 1000:.2f}"]
        for run_name, run in (("both cores", free), ("one core", pinned))
        for s in run["small"]
        for label in [
            {
                "aiohttp": "aiohttp, loop thread kept for the process (ours)",
                "aiohttp-run-per-call": "aiohttp, asyncio.run + new session per call",
                "boto3-threads": "boto3, 64 threads",
            }[s["kind"]]
        ]
    ]
    print(table(["transport", "run", "wall ms/call", "CPU ms/call"], small_rows))
    print("\n### Targets\n")
    print(table(["target", "measured", ""], targets(free, pinned, args.delay)))
    if args.plot:
        plot(free, pinned, args.delay, args.plot)
        print(f"\nplot: {os.path.relpath(args.plot, ROOT)}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
