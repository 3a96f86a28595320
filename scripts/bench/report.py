"""The ratios against issue 11's goals, and the run as markdown.

Pure: takes the result dictionary ``run.py`` builds (and writes as JSON) and returns
text. A goal compares rows of the same run only; a row missing from the run (skipped,
or failed to start) makes its goals "not measured" rather than guessed.
"""

from __future__ import annotations

from typing import Any

Row = dict[str, Any]

# Resident memory counts as flat when no worker grew by more than this.
RSS_FLAT_PCT = 5.0
BATCH_TARGET_PCT = 25.0


def _level(row: Row | None, concurrency: int) -> dict[str, Any] | None:
    if row is None:
        return None
    for level in row["levels"]:
        if level["concurrency"] == concurrency:
            return dict(level)
    return None


def _goal(
    text: str,
    *,
    concurrency: int | None,
    value: float | None,
    target: float,
    lower_is_better: bool = False,
    unit: str = "x",
    note: str = "",
) -> dict[str, Any]:
    """One goal; ``unit`` says how value and target read: "x" a ratio, "%" a percentage."""
    goal: dict[str, Any] = {
        "goal": text,
        "concurrency": concurrency,
        "value": value,
        "target": target,
        "unit": unit,
        "met": None,
        "by_pct": None,
        "note": note,
    }
    if value is None:
        return goal
    if lower_is_better:
        goal["met"] = value <= target
        goal["by_pct"] = abs(value / target - 1) * 100
    else:
        goal["met"] = value >= target
        goal["by_pct"] = abs(1 - value / target) * 100
    return goal


def _pair_goals(
    rows: dict[str, Row],
    levels: list[int],
    *,
    mine: str,
    theirs: str,
    target: float,
    text: str,
    metric: str,
) -> list[dict[str, Any]]:
    goals = []
    for concurrency in levels:
        a, b = _level(rows.get(mine), concurrency), _level(rows.get(theirs), concurrency)
        note = ""
        value: float | None = None
        if a is None or b is None:
            note = f"not measured ({mine if a is None else theirs} missing)"
        elif metric == "rps":
            value = a["rps"] / b["rps"] if b["rps"] else None
        else:
            value = a["p99_ms"] / b["p99_ms"] if b["p99_ms"] else None
        flagged = [r for r in (mine, theirs) if rows.get(r, {}).get("errors")]
        if flagged:
            note = (note + "; " if note else "") + "errors in " + ", ".join(flagged)
        goals.append(
            _goal(
                text,
                concurrency=concurrency,
                value=value,
                target=target,
                lower_is_better=metric == "p99",
                note=note,
            )
        )
    return goals


def goals_compute(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Every goal of issue 11 this run can speak to, each met, missed or not measured."""
    rows = {row["id"]: row for row in result["rows"]}
    levels = list(result["config"]["concurrency"])
    phoenix = rows.get("phoenix-rest") or rows.get("phoenix-v2")
    if phoenix is None:
        return [
            _goal("Phoenix rows", concurrency=None, value=None, target=1.0, note="not measured")
        ]
    workers = phoenix["workers"]
    kv1, kv2 = f"kserve-v1-w{workers}", f"kserve-v2-w{workers}"
    top = max(levels)
    same = f"KServe {{}} ({workers} worker{'s' if workers != 1 else ''}, as Phoenix)"
    # (mine, theirs, target, goal, metric, levels)
    pairs = [
        ("phoenix-rest", "fastapi", 1.0, "REST predict >= 1.0x thin FastAPI", "rps", levels),
        ("phoenix-rest", kv1, 1.5, "REST predict >= 1.5x " + same.format("v1"), "rps", levels),
        ("phoenix-v2", kv2, 1.5, "v2 infer >= 1.5x " + same.format("v2"), "rps", levels),
        ("phoenix-v2", kv1, 1.0, "v2 infer >= 1.0x " + same.format("v1"), "rps", levels),
        ("phoenix-rest", kv1, 1.0, f"REST predict p99 <= {same.format('v1')}'s", "p99", [top]),
        ("phoenix-v2", kv1, 1.0, f"v2 infer p99 <= {same.format('v1')}'s", "p99", [top]),
    ]
    goals = [
        goal
        for mine, theirs, target, text, metric, at in pairs
        for goal in _pair_goals(
            rows, at, mine=mine, theirs=theirs, target=target, text=text, metric=metric
        )
    ]
    raw, batch = result.get("raw"), result.get("batch")
    if batch:
        best = max(batch, key=lambda level: level["rows_per_s"])
        value = 100 * best["rows_per_s"] / raw["batch_rows_per_s"] if raw else None
        goals.append(
            _goal(
                f"batch predict ({result['config']['batch']} rows, best client count) "
                f"rows/s >= {BATCH_TARGET_PCT:g}% of raw onnxruntime's",
                concurrency=best["concurrency"],
                value=value,
                target=BATCH_TARGET_PCT,
                unit="%",
                note="" if raw else "not measured (raw onnxruntime skipped)",
            )
        )
    memory = result.get("memory")
    if memory:
        growth = max(worker["growth_pct"] for worker in memory["workers"])
        goals.append(
            _goal(
                f"resident memory flat over {memory['requests']:,} requests "
                f"(largest worker growth <= {RSS_FLAT_PCT:g}%)",
                concurrency=memory["concurrency"],
                value=growth,
                target=RSS_FLAT_PCT,
                lower_is_better=True,
                unit="%",
            )
        )
    return goals


def _ms(value: float) -> str:
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _cell(level: dict[str, Any] | None) -> str:
    if level is None:
        return "-"
    return f"{level['rps']:,.0f} ({_ms(level['p50_ms'])} / {_ms(level['p99_ms'])})"


def _mib(kib: int | None) -> str:
    return "-" if kib is None else f"{kib / 1024:.0f}"


def _goal_line(goal: dict[str, Any]) -> str:
    where = f", c={goal['concurrency']}" if goal["concurrency"] is not None else ""
    if goal["value"] is None:
        return f"- {goal['goal']}{where}: {goal['note'] or 'not measured'}"
    unit = goal["unit"]
    shown = f"{goal['value']:.1f}%" if unit == "%" else f"{goal['value']:.2f}x"
    target = f"{goal['target']:g}{unit}"
    # A percentage goal misses by points; a ratio goal by a share of its target.
    by = (
        f"{abs(goal['value'] - goal['target']):.1f} points"
        if unit == "%"
        else f"{goal['by_pct']:.0f}%"
    )
    verdict = "**met**" if goal["met"] else f"**missed** by {by}"
    note = f" ({goal['note']})" if goal["note"] else ""
    return f"- {goal['goal']}{where}: {shown} (target {target}): {verdict}{note}"


def markdown(result: dict[str, Any]) -> str:
    """The whole run as a markdown page: machine, table, batch, memory, client CPU, goals."""
    machine, config = result["machine"], result["config"]
    levels = list(config["concurrency"])
    lines = [
        f"# Data-plane benchmark, {result['started_at']}",
        "",
        f"Command: `{result['command']}`",
        "",
        "## Machine",
        "",
        f"- {machine['cpu_model']}, {machine['cpus']} CPUs ({machine['cpus_usable']} usable by "
        f"this run), {machine['memory_gib']:.0f} GiB; {machine['kernel']}",
        f"- load average at start {machine['loadavg_start']}, at end "
        f"{machine.get('loadavg_end', '-')}",
        f"- Python {machine['python']}; onnxruntime: project .venv {machine['onnxruntime']} "
        f"({machine['onnxruntime_dist']} wheel), peers {machine['onnxruntime']} "
        "(CPU wheel `onnxruntime`); every session CPUExecutionProvider, 1 intra-op and "
        "1 inter-op thread, no spinning",
        f"- load generator: {result.get('loadgen_loop', '?')}, raw-socket keep-alive HTTP/1.1 "
        f"closed loop in its own process on the same cores; {config['duration_s']:g} s per "
        f"level after {config['warmup_s']:g} s warm-up",
        f"- model: {result['model']['description']}, sha256 {result['model']['sha256'][:12]}",
        "",
    ]
    raw = result.get("raw")
    if raw:
        lines += [
            "## Raw onnxruntime in process (the floor)",
            "",
            f"{raw['single_row_us_p50']:.1f} us per single-row call (median, "
            f"{raw['single_row_calls']:,} calls); {raw['batch_rows_per_s']:,.0f} rows/s at "
            f"batch {raw['batch']} ({raw['batch_ms_p50']:.2f} ms per call)",
            "",
        ]
    header = " | ".join(f"c={c}" for c in levels)
    lines += [
        "## Single-row requests",
        "",
        "requests/s (p50 / p99 ms); RSS: resident memory per serving process after its runs",
        "",
        f"| server | endpoint | workers | {header} | errors | RSS MiB |",
        "|---|---|---|" + "---|" * len(levels) + "---|---|",
    ]
    for row in result["rows"]:
        cells = " | ".join(_cell(_level(row, c)) for c in levels)
        errors = f"**{row['errors']:,}** (flagged)" if row["errors"] else "0"
        rss = "/".join(_mib(k) for k in row.get("rss_kib", [])) or "-"
        lines.append(
            f"| {row['server']} | {row['endpoint']} | {row['workers']} | {cells} | "
            f"{errors} | {rss} |"
        )
    lines += [
        "",
        "Load generator CPU, cores busy ((user + sys) / wall) per level:",
        "",
        f"| server | endpoint | {header} |",
        "|---|---|" + "---|" * len(levels),
    ]
    for row in result["rows"]:
        cells = " | ".join(
            f"{level['cpu_cores']:.2f}" if (level := _level(row, c)) else "-" for c in levels
        )
        lines.append(f"| {row['server']} | {row['endpoint']} | {cells} |")
    batch = result.get("batch")
    if batch:
        lines += ["", f"## Batch predict, {config['batch']} rows per request (Phoenix REST)", ""]
        for level in batch:
            share = (
                f", {100 * level['rows_per_s'] / raw['batch_rows_per_s']:.1f}% of raw"
                if raw
                else ""
            )
            lines.append(
                f"- c={level['concurrency']}: {level['rows_per_s']:,.0f} rows/s "
                f"({level['rps']:,.0f} req/s, p50 {_ms(level['p50_ms'])} ms, p99 "
                f"{_ms(level['p99_ms'])} ms, errors {level['errors']}, client "
                f"{level['cpu_cores']:.2f} cores){share}"
            )
    memory = result.get("memory")
    if memory:
        lines += [
            "",
            f"## Resident memory, Phoenix workers, over {memory['requests']:,} REST requests "
            f"(c={memory['concurrency']}, {memory['errors']} errors)",
            "",
        ]
        for worker in memory["workers"]:
            lines.append(
                f"- pid {worker['pid']}: {_mib(worker['before_kib'])} -> "
                f"{_mib(worker['after_kib'])} MiB ({worker['growth_pct']:+.1f}%)"
            )
    lines += ["", "## Goals (issue 11)", ""]
    lines += [_goal_line(goal) for goal in result["goals"]] or ["- nothing to compare"]
    notes = [
        *result.get("notes", []),
        *(f"{f['contender']}: {f['error']}" for f in result["failures"]),
    ]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"
