from mealplan_cli.core.signals import STOP

STOP.install()  # before the CLI's imports: a SIGTERM while they run exits 0

from mealplan_cli.cli import app  # noqa: E402

app(prog_name="mealworker")
