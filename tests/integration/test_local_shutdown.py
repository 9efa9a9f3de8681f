"""Ctrl-C on `python -m devserver` stops every process it started and frees every port."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
import requests

from testsupport.localstack import LocalStack, port_is_free, process_alive, require_local_stack_tools

pytestmark = pytest.mark.integration


def process_groups_members(groups: set[int]) -> set[int]:
    """Every live process whose process group is one of `groups` (children and their children)."""
    members = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        state, pgrp = fields[0], int(fields[2])
        if pgrp in groups and state != "Z":
            members.add(int(stat.parent.name))
    return members


def test_ctrl_c_leaves_no_process_and_frees_the_ports() -> None:
    # SIGTERM takes the same path; one stack start (the Auth Emulator's ~10-40 s) is enough.
    require_local_stack_tools()
    stack = LocalStack()
    stack.start()
    try:
        assert stack.process is not None
        children = stack.service_pids()
        assert set(children) == {"aws", "auth", "rest", "gateway", "events", "web"}
        # Each part leads its own process group; the Auth Emulator may have helpers in its group.
        started = process_groups_members(set(children.values()))
        assert set(children.values()) <= started
    finally:
        code = stack.stop(signal.SIGINT)
    assert code == 0, stack.log_text()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(process_alive(pid) for pid in started):
        time.sleep(0.1)
    assert [pid for pid in started if process_alive(pid)] == []
    assert process_groups_members(set(children.values())) == set()
    assert {name: port for name, port in stack.ports.items() if not port_is_free(port)} == {}
    assert not stack.state_file.exists()


def children_of(pid: int) -> set[int]:
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            children.add(int(stat.parent.name))
    return children


def test_ctrl_c_while_starting_stops_what_was_started() -> None:
    require_local_stack_tools()
    stack = LocalStack()
    stack.start(wait=False)
    assert stack.process is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the REST server is up: the Auth Emulator is still starting
        try:
            if requests.get(stack.rest_url + "/health", timeout=1).status_code == 200:
                break
        except requests.RequestException:
            pass
        time.sleep(0.2)
    started = children_of(stack.process.pid)
    assert len(started) == 6, stack.log_text()
    code = stack.stop(signal.SIGINT)
    assert code == 130, stack.log_text()  # interrupted, as a shell reports Ctrl-C
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and process_groups_members(started):
        time.sleep(0.1)
    assert process_groups_members(started) == set()
    assert {name: port for name, port in stack.ports.items() if not port_is_free(port)} == {}
