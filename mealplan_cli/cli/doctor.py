"""``mealworker doctor``: is this machine ready to run the worker, and if not, why."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from mealplan_cli.cli.app import app, load_settings, run_async, stdout

if TYPE_CHECKING:
    from mealplan_cli.ops.doctor import Check


@app.command()
def doctor(
    ctx: typer.Context,
    roundtrip: Annotated[
        bool, typer.Option("--roundtrip", help="Also send a ping job through a running worker.")
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the roundtrip.")] = 30.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Check settings, database, migrations, RLS, wake-ups, OpenAI and Unsplash. Exit 1 on a
    failure."""
    settings = load_settings(ctx)

    from rich.text import Text

    from mealplan_cli.ops.doctor import Verdict, run_checks

    styles = {Verdict.ok: "green", Verdict.warn: "yellow", Verdict.fail: "bold red"}

    def show(check: Check) -> None:
        if as_json:
            return
        line = Text(f"{check.verdict.value:>4}  ", style=styles[check.verdict])
        line.append(f"{check.name}: ", style="bold")
        line.append(check.detail)
        if check.advice and check.verdict is not Verdict.ok:
            line.append(f"\n      -> {check.advice}", style="dim")
        stdout.print(line)

    checks = run_async(
        ctx, run_checks(settings, roundtrip=timeout if roundtrip else None, report=show)
    )
    if as_json:
        stdout.out(json.dumps([{**c.__dict__, "verdict": c.verdict.value} for c in checks]))
    if any(check.verdict is Verdict.fail for check in checks):
        raise typer.Exit(1)
