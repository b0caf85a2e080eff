"""Rich views of a meal plan and of a generation in progress."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console, Group
from rich.panel import Panel
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from mealplan_cli.cli.wording import plural
from mealplan_cli.mealplans.generation.models import Day, MealPlan
from mealplan_cli.mealplans.generation.planner import Progress as PlanProgress
from mealplan_cli.mealplans.generation.planner import ProgressCallback

STAGE_LABELS = {
    "outline": "Outline",
    "day": "Days",
    "photos": "Photos",
    "validation": "Validation",
}


@contextmanager
def progress_display(console: Console) -> Iterator[ProgressCallback]:
    """A live progress bar per stage, fed by the library's progress callback."""
    bars = Progress(
        TextColumn("{task.description:<11}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f}"),
        TextColumn("[dim]{task.fields[note]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    tasks: dict[str, TaskID] = {}

    def report(step: PlanProgress) -> None:
        label = STAGE_LABELS.get(step.stage, step.stage)
        if step.stage not in tasks:
            tasks[step.stage] = bars.add_task(label, total=max(step.total, 1), note="")
        bars.update(
            tasks[step.stage],
            completed=step.done,
            total=max(step.total, 1),
            note=step.message[:50],
        )

    with bars:
        yield report


def _number(value: float) -> str:
    return f"{value:.0f}"


def day_table(day: Day, *, fill: bool = True) -> Table:
    table = Table(
        title=f"Day {day.day}",
        title_justify="left",
        show_footer=True,
        expand=fill,
        header_style="bold",
    )
    table.add_column("Meal", footer="Total")
    table.add_column("Dish", ratio=3, footer=f"target {day.target_kcal} kcal")
    table.add_column("kcal", justify="right", footer=_number(day.totals.kcal))
    table.add_column("P g", justify="right", footer=_number(day.totals.protein))
    table.add_column("C g", justify="right", footer=_number(day.totals.carbs))
    table.add_column("F g", justify="right", footer=_number(day.totals.fat))
    table.add_column("min", justify="right", footer=f"{day.deviation_pct:+.1f}%")
    for meal in day.meals:
        dish = Text(meal.title, style="bold")
        if meal.allergens:
            dish.append(f"\ncontains {', '.join(a.value for a in meal.allergens)}", style="dim")
        if meal.photo:
            dish.append(f"\n{meal.photo.attribution}", style="dim italic")
        n = meal.nutrition
        table.add_row(
            meal.slot.value,
            dish,
            _number(n.kcal),
            _number(n.protein),
            _number(n.carbs),
            _number(n.fat),
            str(meal.prep_minutes + meal.cook_minutes),
        )
    return table


def shopping_table(plan: MealPlan, *, fill: bool = True) -> Table:
    household = plan.request.household_size
    table = Table(
        title=f"Shopping list ({household} serving{'s' if household > 1 else ''} per meal)",
        title_justify="left",
        expand=fill,
        header_style="bold",
    )
    table.add_column("Aisle")
    table.add_column("Item", ratio=2)
    table.add_column("Amount", justify="right")
    table.add_column("Grams", justify="right")
    for section in plan.shopping_list:
        for index, item in enumerate(section.items):
            table.add_row(
                section.aisle if index == 0 else "",
                item.name,
                f"{item.quantity:g} {item.unit}",
                f"{item.grams:.0f}",
                end_section=index == len(section.items) - 1,
            )
    return table


def summary_panel(plan: MealPlan, *, fill: bool = True) -> Panel:
    request, meta = plan.request, plan.metadata
    report = meta.validation
    lines = [
        f"[bold]{plural(request.days, 'day')}[/], {', '.join(s.value for s in request.meals)}; "
        f"{request.calories} kcal/day; diet {' + '.join(d.value for d in request.diet)}",
        "allergies: " + (", ".join(a.value for a in request.allergies) or "none"),
        f"average per day: {plan.daily_average.kcal:.0f} kcal, protein "
        f"{plan.daily_average.protein:.0f} g, carbs {plan.daily_average.carbs:.0f} g, fat "
        f"{plan.daily_average.fat:.0f} g, fibre {plan.daily_average.fiber:.0f} g",
        f"planner {meta.planner}"
        + (f" ({meta.model})" if meta.model else "")
        + (f", seed {meta.seed}" if meta.seed is not None else "")
        + f", {meta.duration_ms} ms",
        f"validation: passed; {plural(len(report.scaled), 'portion')} scaled, "
        f"{plural(len(report.rejected), 'meal')} rejected and rewritten",
        f"photos: {meta.photos}",
    ]
    if meta.usage.calls:
        u = meta.usage
        lines.append(
            f"OpenAI: {plural(u.calls, 'call')}, {plural(u.input_tokens, 'token')} in "
            f"({u.cached_tokens} cached), "
            f"{u.output_tokens} out, about ${u.cost_usd:.4f}"
        )
    if request.macros is not None:
        lines.append(macros_line(plan))
    if meta.cuisines is not None:
        c = meta.cuisines
        lines.append(
            f"cuisines {', '.join(c.asked)}: {c.from_asked} of {c.meals} meals"
            + (f" ({c.note})" if c.note else "")
        )
    if meta.exclusions:
        lines.append(exclusions_line(plan))
    lines += [f"[yellow]note:[/] {note}" for note in report.notes]
    return Panel("\n".join(lines), title="Meal plan", title_align="left", expand=fill)


def _some(names: list[str], shown: int = 4) -> str:
    more = len(names) - shown
    return ", ".join(names[:shown]) + (f" and {more} more" if more > 0 else "")


def macros_line(plan: MealPlan) -> str:
    """One line: on how many days the macro split was met, and why not on the others."""
    asked = plan.request.macros
    declined = plan.metadata.validation.macros
    if asked is None:
        return "macros: none asked"
    split = f"{asked.protein}/{asked.carbs}/{asked.fat}"
    met = len(plan.days) - len(declined)
    line = f"macros {split} (within 5 points): met on {met} of {len(plan.days)} days"
    if declined:
        first = declined[0]
        days = ", ".join(str(d.day) for d in declined)
        line += f"; [yellow]declined[/] on day{'s' if len(declined) > 1 else ''} {days}"
        line += f" (day {first.day}: {first.reason})"
    return line


def exclusions_line(plan: MealPlan) -> str:
    """One line: what each exclusion left out (prepared foods too) and the relatives kept."""
    parts = []
    for report in plan.metadata.exclusions:
        part = f"{report.term}: {len(report.left_out)} foods out"
        if report.left_out_prepared:
            part += f", and {len(report.left_out_prepared)} prepared foods with it"
            part += f" ({_some(report.left_out_prepared)})"
        if report.relatives_kept:
            part += f"; relatives kept: {_some(report.relatives_kept)}"
        parts.append(part)
    return "excluded " + " | ".join(parts)


def plan_view(plan: MealPlan, *, fill: bool = True) -> Group:
    """The whole plan; ``fill`` stretches it to the terminal's width (off a terminal the
    console is very wide, so that nothing wraps, and the view keeps its natural width)."""
    return Group(
        summary_panel(plan, fill=fill),
        *(day_table(day, fill=fill) for day in plan.days),
        shopping_table(plan, fill=fill),
    )
