"""The README documents every setting and both set-up commands."""

from pathlib import Path

from worker.settings import Settings

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_every_setting_is_in_the_configuration_table():
    for name, field in Settings.model_fields.items():
        row = f"| `CHAT_{name.upper()}` / `--{name.replace('_', '-')}` | `{field.default}` |"
        assert row in README, f"README lacks (or has a stale default for) {name}"


def test_the_two_commands_are_there_and_ci_runs_the_test_one():
    assert "make demo" in README and "make test" in README
    ci = (Path(__file__).resolve().parent.parent / ".ci/run").read_text()
    assert "make test" in ci


def test_every_dashboard_setting_is_in_its_table():
    from dashboard.settings import DashboardSettings

    for name, field in DashboardSettings.model_fields.items():
        row = f"| `DASH_{name.upper()}` / `--{name.replace('_', '-')}` | `{field.default}` |"
        assert row in README, f"README lacks (or has a stale default for) dashboard {name}"
