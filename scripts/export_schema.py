"""Write the published JSON Schema of a meal plan: python scripts/export_schema.py."""

import json
from pathlib import Path

from mealplan_cli.mealplans.generation.models import plan_json_schema

TARGET = Path(__file__).resolve().parent.parent / "schema" / "meal-plan.schema.json"


def render() -> str:
    return json.dumps(plan_json_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    TARGET.write_text(render(), encoding="utf-8")
    print(f"wrote {TARGET}")
