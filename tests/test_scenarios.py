"""The scenario list itself: combinations must pair every option's name with its own values."""

from __future__ import annotations

from conftest import CHOICES, SCENARIOS, choice_combinations


def test_two_choice_options_pair_names_with_their_own_values() -> None:
    # Declared out of alphabetical order, as cookiecutter.json may list them.
    choices = {"vector_store": ["embedded", "server"], "llm": ["none", "openai", "anthropic"]}
    combinations = choice_combinations(choices)
    assert len(combinations) == 6
    for combination in combinations:
        assert combination["vector_store"] in choices["vector_store"]
        assert combination["llm"] in choices["llm"]
    pairs = {(c["llm"], c["vector_store"]) for c in combinations}
    assert pairs == {(a, b) for a in choices["llm"] for b in choices["vector_store"]}


def test_scenarios_cover_every_value_of_every_choice() -> None:
    for option, values in CHOICES.items():
        rendered = {scenario.answers[option] for scenario in SCENARIOS}
        assert rendered == set(values), option
