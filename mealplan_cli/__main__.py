from mealplan_cli.cli import app

app(prog_name="mealworker")
