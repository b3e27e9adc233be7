"""CPU seconds spent by process trees (from /proc), to say where a load test's time goes."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # fields after "pid (comm) "


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None:
                tree.setdefault(int(fields[1]), []).append(int(entry.name))
    return tree


def tree_cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU of these processes and their live descendants (and reaped children)."""
    tree = _children()
    total = 0
    todo = list(pids)
    while todo:
        pid = todo.pop()
        fields = _stat(pid)
        if fields is None:
            continue
        total += sum(int(value) for value in fields[11:15])  # utime, stime, cutime, cstime
        todo.extend(tree.get(pid, []))
    return total / _TICKS


def own_cpu_seconds() -> float:
    """User + system CPU of this process alone (not the node processes it started)."""
    times = os.times()
    return times.user + times.system


def named_cpu_seconds(name: str) -> float:
    """CPU of every process whose command name is `name` (e.g. the Postgres backends)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                comm = (entry / "comm").read_text().strip()
            except OSError:
                continue
            fields = _stat(int(entry.name)) if comm == name else None
            if fields is not None:
                total += sum(int(value) for value in fields[11:13])
    return total / _TICKS
