"""``mealworker generate`` as a user runs it, through Typer's runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mealplan_cli.cli import app
from tests.conftest import OPENAI_TEST_KEY, UNSPLASH_TEST_KEY
from tests.fakes.openai_server import FakeOpenAI, Fault
from tests.fakes.unsplash_server import FakeUnsplash

runner = CliRunner()

SMALL = ["--days", "2", "--meals", "breakfast,snack", "--calories", "1600"]


def test_generate_prints_tables_with_no_configuration() -> None:
    result = runner.invoke(app, ["generate", *SMALL, "--diet", "vegan"])
    assert result.exit_code == 0, result.output
    assert "Day 1" in result.output
    assert "Day 2" in result.output
    assert "Shopping list" in result.output
    assert "planner catalog" in result.output


def test_generate_json_is_a_valid_plan() -> None:
    result = runner.invoke(app, ["generate", *SMALL, "--json", "--seed", "5"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["metadata"]["planner"] == "catalog"
    assert plan["metadata"]["seed"] == 5
    assert len(plan["days"]) == 2


def test_the_same_seed_gives_the_same_plan() -> None:
    first = runner.invoke(app, ["generate", *SMALL, "--json", "--seed", "11"])
    second = runner.invoke(app, ["generate", *SMALL, "--json", "--seed", "11"])
    titles = [
        [m["title"] for d in json.loads(r.stdout)["days"] for m in d["meals"]]
        for r in (first, second)
    ]
    assert titles[0] == titles[1]


def test_generate_writes_out_a_file_and_reads_a_request_file(tmp_path: Path) -> None:
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"days": 1, "meals": ["breakfast"], "calories": 1800}))
    out = tmp_path / "plan.json"
    result = runner.invoke(
        app, ["generate", "--request", str(request), "--calories", "2100", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    plan = json.loads(out.read_text())
    assert plan["request"]["calories"] == 2100
    assert plan["request"]["meals"] == ["breakfast"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--days", "30"], "days: Input should be less than or equal to 14"),
        (["--diet", "carnivore"], "diet.0: Input should be"),
        (["--allergies", "shellfsh"], "unknown allergen 'shellfsh'"),
        (["--macros", "50/50/50"], "invalid --macros '50/50/50': "),
        (["--request", "missing.json"], "request file missing.json does not exist"),
        (["--planner", "openai"], "needs OPENAI_API_KEY"),
    ],
)
def test_bad_input_is_one_line_on_stderr_and_exit_1(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["generate", *args])
    assert result.exit_code == 1
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""


def test_a_malformed_request_file_says_where(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"days": 3,,}')
    result = runner.invoke(app, ["generate", "--request", str(bad)])
    assert result.exit_code == 1
    assert "is not valid JSON (line 1" in result.stderr


def test_an_impossible_request_names_the_constraint() -> None:
    result = runner.invoke(
        app,
        [
            "generate",
            "--diet",
            "vegan,keto",
            "--allergies",
            "soybeans,tree_nuts,gluten",
        ],
    )
    assert result.exit_code == 1
    assert "not enough" in result.stderr
    assert "vegan + keto" in result.stderr


def test_generate_with_openai_against_the_fake(
    fake_openai: FakeOpenAI, fake_unsplash: FakeUnsplash, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_TEST_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.base_url)
    monkeypatch.setenv("UNSPLASH_ACCESS_KEY", UNSPLASH_TEST_KEY)
    monkeypatch.setenv("UNSPLASH_API_URL", fake_unsplash.base_url)
    result = runner.invoke(app, ["generate", *SMALL, "--json", "--model", "gpt-4o-mini"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["metadata"]["planner"] == "openai"
    assert all(m["photo"] for d in plan["days"] for m in d["meals"])
    assert OPENAI_TEST_KEY not in result.output
    assert UNSPLASH_TEST_KEY not in result.output


def test_a_provider_failure_is_one_line_without_the_key(
    fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_TEST_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.base_url)
    fake_openai.inject(Fault.insufficient_quota)
    result = runner.invoke(app, ["generate", *SMALL])
    assert result.exit_code == 1
    assert "no quota left" in result.stderr
    assert OPENAI_TEST_KEY not in result.output


def test_debug_shows_the_traceback() -> None:
    result = runner.invoke(app, ["--debug", "generate", "--days", "30"])
    assert result.exit_code == 1
    assert result.exception is not None


def test_the_env_file_option_is_read(tmp_path: Path) -> None:
    env_file = tmp_path / "worker.env"
    env_file.write_text("PLANNER=openai\n")
    result = runner.invoke(app, ["--env-file", str(env_file), "generate", *SMALL])
    assert result.exit_code == 1
    assert "needs OPENAI_API_KEY" in result.stderr


def test_the_plan_json_carries_the_safety_notice() -> None:
    result = runner.invoke(app, ["generate", *SMALL, "--json", "--allergies", "nuts"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert "cross-contamination" in plan["metadata"]["safety_notice"]
    assert plan["request"]["allergies"] == ["tree_nuts", "peanuts"]


def test_help_lists_the_allergy_aliases() -> None:
    result = runner.invoke(app, ["generate", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    text = " ".join(result.output.replace("\u2502", " ").split())
    assert "shellfish = crustaceans + molluscs" in text
    assert "nuts = tree_nuts + peanuts" in text
    from mealplan_cli.mealplans.generation.vocabulary import ALLERGEN_ALIASES

    for alias in ALLERGEN_ALIASES:
        assert f"{alias} = " in text, alias


def test_the_readme_lists_every_alias() -> None:
    from mealplan_cli.mealplans.generation.vocabulary import ALLERGEN_ALIASES

    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    for alias in ALLERGEN_ALIASES:
        assert f"`{alias}`" in readme or f"`{alias.rstrip('s')}(s)`" in readme, alias


def test_generate_says_in_one_line_what_an_exclusion_left_out() -> None:
    result = runner.invoke(app, ["generate", *SMALL, "--exclude", "onion", "--seed", "2"])
    assert result.exit_code == 0, result.output
    line = " ".join(result.output.replace("│", " ").split())  # the panel wraps long lines
    assert "excluded onion:" in line
    assert "prepared foods with it" in line
    assert "relatives kept: shallot, leek, chives" in line


def test_generate_says_in_one_line_whether_the_macro_split_was_met() -> None:
    args = ["generate", "--days", "3", "--macros", "35/35/30", "--seed", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    line = " ".join(result.output.replace("│", " ").split())
    assert "macros 35/35/30 (within 5 points): met on" in line


def test_an_infeasible_request_says_the_cause_first() -> None:
    result = runner.invoke(app, ["generate", "--diet", "vegan,paleo"])
    assert result.exit_code == 1
    assert "No lunch fits vegan + paleo" in result.stderr
