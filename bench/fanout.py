"""Fan-out: `notify_users` to N connections, the app's transport against the plain client.

    python -m bench.fanout                 # N = 10, 100, 1,000, 10,000; writes docs/fanout.md and .png
    python -m bench.fanout --quick         # N up to 1,000, sequential up to 100 (a few minutes)

The baseline is the plain client (`bench/plain_client.py`): aiohttp posting each frame signed
by botocore's `SigV4Auth`, 64 in flight. Compared with it in the same run: the app's transport
(libcurl's multi interface through pycurl, signing key cached per day), the previous aiohttp
transport, and a sequential boto3 loop.

Setup, all on loopback: the Management API stand-in (bench/standin.py) in its own process
answers each POST after `--delay` (20 ms), 410 for 1 connection in 20; the rows live in
moto's DynamoDB server in another process (one table per N: moto's Query reads its whole
table, real DynamoDB's does not). Each N is one user holding N connections, so a run is
1 Query page (2 at 10,000) + N posts + the gone rows' batch deletes through the Notifier,
whatever the transport.

Each transport is measured in a worker process, warm (a first small notify opened its
connections, as in a warm Lambda): once free to use both cores, once pinned to one core
with `taskset -c 0` (what a 1,769 MB Lambda gets). The stand-ins sit on core 1. CPU is the
worker's process time (all its threads, the DynamoDB client included) per delivered frame.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
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

KINDS = ("curl", "plain", "aiohttp", "boto3-sequential")
BASELINE = "plain"
OURS = "curl"
LABELS = {
    "curl": "pycurl multi + cached-key SigV4 (ours)",
    "plain": "plain client: aiohttp + SigV4Auth (baseline)",
    "aiohttp": "aiohttp + SigV4Auth, retries (previous)",
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
            "RATE_LIMITS_TABLE": "bench-rate-limits",
            "TOPICS_TABLE": "bench-topics",
            "ROOMS_TABLE": "bench-rooms",
        }
        create_tables(dynamodb, names)
        put_rows(dynamodb, table_name(n), rows(n))


# ---------------------------------------------------------------- the worker (one process per run)


def make_transport(kind: str, endpoint: str) -> Any:
    from chalice_realtime.transports.aiohttp import AiohttpTransport
    from chalice_realtime.transports.boto3 import Boto3ThreadPoolTransport
    from chalice_realtime.transports.curl import CurlTransport

    from bench.plain_client import PlainClient

    if kind == "curl":
        return CurlTransport(endpoint, concurrency=CONCURRENCY)
    if kind == "plain":
        return PlainClient(endpoint, concurrency=CONCURRENCY)
    if kind == "aiohttp":
        return AiohttpTransport(endpoint, concurrency=CONCURRENCY)
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


def round_trip(endpoint: str, posts: int = 40) -> float:
    """Median seconds of one post at a time through the app's transport: the stand-in's delay plus what
    loopback and this machine's scheduling add to it (no concurrency, so no queueing in the client)."""
    transport = make_transport(OURS, endpoint)
    times = []
    for i in range(posts):
        started = time.perf_counter()
        transport.post_to_connections([f"probe-{i}="], b'{"event":"bench-probe"}')
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def worker(
    endpoint: str, ns: list[int], sequential_max: int, warm_calls: int, kinds: list[str]
) -> dict[str, Any]:
    import boto3
    from botocore.config import Config
    from chalice_realtime.aws import RETRIES
    from chalice_realtime.connections import ConnectionStore
    from chalice_realtime.notifier import Notifier

    # moto takes 10-20 s to answer a Query of 10,000 items (DynamoDB: one 1 MB page in a few ms),
    # beyond the app's 10 s read timeout: the same client settings otherwise.
    dynamodb = boto3.client(
        "dynamodb",
        config=Config(retries=RETRIES, max_pool_connections=32, connect_timeout=3, read_timeout=120),
    )
    raw = boto3.client("dynamodb")
    dynamodb_clock = DynamoDBClock(dynamodb)
    results: list[dict[str, Any]] = []
    rtt = round_trip(endpoint)
    for kind in kinds:
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
    # Many small notifies (a warm Lambda's usual day): 1 Query + 3 posts each.
    small: list[dict[str, Any]] = []
    for kind in [k for k in kinds if k != "boto3-sequential"]:
        notifier = Notifier(ConnectionStore(table_name(3), dynamodb), make_transport(kind, endpoint))
        notifier.notify(USER, "bench-warm-up")
        _, wall, cpu = measure(lambda: [notifier.notify(USER, "bench-small") for _ in range(warm_calls)])  # noqa: B023
        small.append({"kind": kind, "wall": wall / warm_calls, "cpu": cpu / warm_calls})
    return {"fanout": results, "small": small, "round_trip": rtt}


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
        "--kinds",
        ",".join(args.kinds),
    ]
    env = {**os.environ, **AWS_ENV, "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_url}
    out = subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


# ---------------------------------------------------------------- report


def cpu_per_frame(r: dict[str, Any]) -> float:
    return float(r["cpu"]) / max(int(r["delivered"]), 1)


def fanout_table(results: list[dict[str, Any]], delay: float) -> str:
    rows_out = []
    for r in results:
        ideal = r["n"] * delay / CONCURRENCY if r["kind"] != "boto3-sequential" else r["n"] * delay
        base = find(results, BASELINE, r["n"])
        rows_out.append(
            [
                LABELS[r["kind"]],
                f"{r['n']:,}",
                f"{r['fanout'] * 1000:,.0f}",
                f"{r['fanout'] / max(ideal, 1e-9):.2f}x",
                f"{r['dynamodb'] * 1000:,.0f}",
                f"{cpu_per_frame(r) * 1000:.3f}",
                f"{cpu_per_frame(r) / cpu_per_frame(base):.2f}x" if base else "",
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
            "CPU vs plain",
            "frames/s",
            "delivered/gone/failed",
        ],
        rows_out,
    )


def find(results: list[dict[str, Any]], kind: str, n: int) -> dict[str, Any] | None:
    return next((r for r in results if r["kind"] == kind and r["n"] == n), None)


COMMAND = "python -m bench.fanout"


def targets(free: dict[str, Any], pinned: dict[str, Any], delay: float) -> list[list[str]]:
    """One row per figure: what, ours, the plain client in the same run, the ratio, the target, met."""
    out: list[list[str]] = []
    for n in (1000, 10000):
        ours, base = find(pinned["fanout"], OURS, n), find(pinned["fanout"], BASELINE, n)
        if ours and base:
            ratio = cpu_per_frame(ours) / cpu_per_frame(base)
            out.append(
                [
                    f"CPU per delivered frame, N = {n:,}, one core",
                    f"{cpu_per_frame(ours) * 1000:.3f} ms",
                    f"{cpu_per_frame(base) * 1000:.3f} ms",
                    f"{ratio:.2f}x",
                    "<= 0.25x the plain client",
                    verdict(ratio <= 0.25),
                ]
            )
    ours, base = find(pinned["fanout"], OURS, 10000), find(pinned["fanout"], BASELINE, 10000)
    if ours:
        out.append(
            [
                "10,000 connections from one core, fan-out time",
                f"{ours['fanout']:.2f} s",
                f"{base['fanout']:.2f} s" if base else "",
                f"{ours['fanout'] / base['fanout']:.2f}x" if base else "",
                "< 5 s",
                verdict(ours["fanout"] < 5),
            ]
        )
    ours, base = find(pinned["fanout"], OURS, 1000), find(pinned["fanout"], BASELINE, 1000)
    if ours:
        ideal = 1000 * delay / CONCURRENCY
        out.append(
            [
                f"1,000 connections from one core, vs ideal N x {delay * 1000:.0f} ms / {CONCURRENCY}",
                f"{ours['fanout'] / ideal:.2f}x ideal",
                f"{base['fanout'] / ideal:.2f}x ideal" if base else "",
                f"{ours['fanout'] / base['fanout']:.2f}x" if base else "",
                "<= 1.5x ideal",
                verdict(ours["fanout"] / ideal <= 1.5),
            ]
        )
    ours, seq = find(free["fanout"], OURS, 1000), find(free["fanout"], "boto3-sequential", 1000)
    if ours and seq:
        speedup = seq["fanout"] / ours["fanout"]
        out.append(
            [
                "1,000 connections, both cores, vs a sequential boto3 loop",
                f"{ours['fanout']:.2f} s",
                f"{seq['fanout']:.2f} s (sequential)",
                f"{speedup:.0f}x faster",
                ">= 20x faster",
                verdict(speedup >= 20),
            ]
        )
    return [[*row[:5], COMMAND, row[5]] for row in out]


TARGET_HEADERS = ["figure", "ours", "baseline, same run", "ratio", "target", "command", ""]


def plot(free: dict[str, Any], pinned: dict[str, Any], delay: float, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5))
    colors = {
        "curl": "tab:green",
        "plain": "tab:blue",
        "aiohttp": "tab:orange",
        "boto3-sequential": "tab:red",
    }
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
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def round_trip_note(pinned: dict[str, Any], delay: float) -> str:
    """What one post took in this run, and the fan-out times measured against that instead of `delay`."""
    rtt = float(pinned["round_trip"])
    parts = []
    for n in (1000, 10000):
        ours = find(pinned["fanout"], OURS, n)
        if ours:
            parts.append(f"{n:,}: {ours['fanout'] / (n * rtt / CONCURRENCY):.2f}x")
    return (
        f"One post at a time took {rtt * 1000:.1f} ms here (median of 40, pinned; the stand-in waits "
        f"{delay * 1000:.0f} ms): loopback and the machine's scheduling add the rest. Measured against "
        f"N x {rtt * 1000:.1f} ms / {CONCURRENCY} instead, the one-core fan-out times are "
        + (", ".join(parts) or "not measured")
        + "."
    )


SECTION_START = "<!-- generated by `python -m bench.fanout`: edit bench/fanout.py, not this section -->"
SECTION_END = "<!-- end of the section generated by `python -m bench.fanout` -->"


def with_section(page: str, section: str) -> str:
    """`page` with its generated fan-out section replaced by `section` (the markers must be there)."""
    start, end = page.find(SECTION_START), page.find(SECTION_END)
    if start < 0 or end < start:
        raise RuntimeError(f"the page has no section between {SECTION_START!r} and {SECTION_END!r}")
    return f"{page[:start]}{SECTION_START}\n\n{section.strip()}\n\n{page[end:]}"


def summary(free: dict[str, Any], pinned: dict[str, Any], args: argparse.Namespace, loads: str) -> str:
    """The targets, each with its figure, the baseline from the same run and the ratio."""
    return "\n".join(
        [
            f"Measured by `{COMMAND}{' --quick' if args.quick else ''}` on {machine()}; {loads}. "
            f"Stand-in delay {args.delay * 1000:.0f} ms, 1 connection in {GONE_EVERY} answers 410, "
            f"{CONCURRENCY} requests in flight. The baseline is the plain client unless the row says "
            "otherwise.",
            "",
            table(TARGET_HEADERS, targets(free, pinned, args.delay)),
            "",
            round_trip_note(pinned, args.delay),
        ]
    )


def report(free: dict[str, Any], pinned: dict[str, Any], args: argparse.Namespace, loads: str) -> str:
    """The Markdown the command prints and writes to `--out`."""
    small_rows = [
        [LABELS[s["kind"]], run_name, f"{s['wall'] * 1000:.1f}", f"{s['cpu'] * 1000:.2f}"]
        for run_name, run in (("both cores", free), ("one core", pinned))
        for s in run["small"]
    ]
    note = f"sequential loop only up to N = {args.sequential_max:,}: it takes N x {args.delay * 1000:.0f} ms"
    return "\n".join(
        [
            f"<!-- written by `{COMMAND}{' --quick' if args.quick else ''}`; do not edit by hand -->",
            "",
            "### Targets, against the plain client in the same run",
            "",
            summary(free, pinned, args, loads),
            "",
            "### Fan-out, pinned to one core (`taskset -c 0`, as a 1,769 MB Lambda; sequential only to 100)",
            "",
            fanout_table(pinned["fanout"], args.delay),
            "",
            f"### Fan-out, free to use both cores ({note})",
            "",
            fanout_table(free["fanout"], args.delay),
            "",
            f"### Warm Lambda: {args.warm_calls} small notifies (1 Query + 3 posts each), per call",
            "",
            table(["transport", "run", "wall ms/call", "CPU ms/call"], small_rows),
            "",
        ]
    )


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
    parser.add_argument(
        "--out", default=str(ROOT / "docs" / "fanout.md"), help="Markdown tables to write ('' for none)"
    )
    parser.add_argument(
        "--page",
        default=str(ROOT / "docs" / "performance.md"),
        help="page whose generated fan-out section gets the targets ('' for none)",
    )
    parser.add_argument(
        "--kinds", default=",".join(KINDS), help=f"transports to run, the baseline always ({','.join(KINDS)})"
    )
    parser.add_argument("--worker", metavar="ENDPOINT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.ns = [int(n) for n in str(args.ns).split(",")]
    args.kinds = [k for k in KINDS if k in {*str(args.kinds).split(","), OURS, BASELINE}]
    if args.quick:
        args.ns, args.sequential_max, args.warm_calls = [n for n in args.ns if n <= 1000], 100, 30
    if args.worker:
        print(json.dumps(worker(args.worker, args.ns, args.sequential_max, args.warm_calls, args.kinds)))
        return

    os.environ.update(AWS_ENV)
    start_load = os.getloadavg()[0]
    print(f"machine: {machine()}; load average {start_load:.1f} at the start (shared machine)", flush=True)
    with management_api_standin(args.delay) as endpoint, moto_server() as dynamodb_url:
        os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = dynamodb_url
        started = time.monotonic()
        load_tables(args.ns)
        print(f"loaded {sum(args.ns):,} rows into moto in {time.monotonic() - started:.0f} s", flush=True)
        free = run_worker(False, endpoint, dynamodb_url, args)
        pinned = run_worker(True, endpoint, dynamodb_url, args)
    loads = f"load average {start_load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    markdown = report(free, pinned, args, loads)
    print("\n" + markdown)
    if args.out:
        with open(args.out, "w") as out:
            out.write(markdown)
        print(f"tables: {os.path.relpath(args.out, ROOT)}")
    if args.page:
        page = Path(args.page)
        page.write_text(with_section(page.read_text(), summary(free, pinned, args, loads)))
        print(f"targets: {os.path.relpath(args.page, ROOT)}")
    if args.plot:
        plot(free, pinned, args.delay, args.plot)
        print(f"plot: {os.path.relpath(args.plot, ROOT)}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
