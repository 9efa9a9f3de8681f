"""checkov on a packaged template, held against `infra/checkov-allowlist.json`.

Every failed check must be accepted there, with its reason, and every accepted entry must still
match a failure (an entry nothing needs is removed, not kept "just in case"):

    python -m infra.checkov out/dev/sam.json     # exit 1 listing what is neither passed nor accepted

checkov runs from its own venv (`.venv-checkov`, `make install`): it pins a boto3 the app's
cannot share. It is run offline (`--skip-download`; `BC_SKIP_MAPPING` skips its guideline lookup).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
ALLOWLIST = Path(__file__).with_name("checkov-allowlist.json")
MIN_REASON_CHARS = 40


@dataclass(frozen=True)
class Failure:
    check: str  # CKV_AWS_117
    resource: str  # AWS::Serverless::Function.RunJob
    name: str  # checkov's title of the check

    def __str__(self) -> str:
        return f"{self.check} {self.resource}: {self.name}"


def allowlist() -> list[dict[str, Any]]:
    """The accepted entries: `check`, `resources` (`Type.LogicalId`, or `*`) and `reason`."""
    return list(json.loads(ALLOWLIST.read_text())["accepted"])


def failures(template: Path, checkov: Path = CHECKOV) -> list[Failure]:
    """The checks checkov fails on `template`; `FileNotFoundError` when checkov is not installed."""
    if not checkov.exists():
        raise FileNotFoundError(f"{checkov} is missing: run `make install` (it creates .venv-checkov)")
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_EXPERIMENTAL_IMAGE_REFERENCING": "FALSE"}
    result = subprocess.run(
        [
            str(checkov),
            "-f",
            str(template),
            "--framework",
            "cloudformation",
            "--output",
            "json",
            "--quiet",
            "--compact",
            "--skip-download",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    if result.returncode not in (0, 1) or not result.stdout.strip():
        raise RuntimeError(f"checkov failed to run ({result.returncode}):\n{result.stderr[-3000:]}")
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    if not any(r.get("summary", {}).get("passed") for r in reports):
        raise RuntimeError(f"checkov passed nothing: did it read the template?\n{result.stdout[:2000]}")
    return [
        Failure(check["check_id"], check["resource"], check["check_name"])
        for r in reports
        for check in r.get("results", {}).get("failed_checks", [])
    ]


def accepted(failure: Failure, entry: dict[str, Any]) -> bool:
    return entry["check"] == failure.check and (
        "*" in entry["resources"] or failure.resource in entry["resources"]
    )


def problems(found: list[Failure], entries: list[dict[str, Any]]) -> list[str]:
    """What is wrong: failures nobody accepted, entries without a reason, entries nothing matches."""
    wrong = [f"not accepted: {f}" for f in found if not any(accepted(f, e) for e in entries)]
    for entry in entries:
        label = f"{entry.get('check')} {entry.get('resources')}"
        if len(str(entry.get("reason", "")).strip()) < MIN_REASON_CHARS:
            wrong.append(f"accepted without a reason that says why: {label}")
        if not any(accepted(f, entry) for f in found):
            wrong.append(f"accepted but no longer failing (remove it): {label}")
    return wrong


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m infra.checkov", description=__doc__.split("\n\n")[0])
    parser.add_argument("template", type=Path)
    args = parser.parse_args(argv)
    found = failures(args.template)
    wrong = problems(found, allowlist())
    for line in wrong:
        print(line, file=sys.stderr)
    if wrong:
        sys.exit(1)
    print(f"checkov: {len(found)} failed checks, each accepted with its reason in {ALLOWLIST.name}")


if __name__ == "__main__":
    main()
