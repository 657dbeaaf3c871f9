import numpy as np

from worker.rules import AlertRules, apply_customer_score, signed, trend_of, turn_score
from worker.state import ConversationState

RULES = AlertRules(level_threshold=-0.5, negative_threshold=-0.2, streak=3, drop=0.5,
                   sentiment_threshold=-2.0, cooldown_turns=2, ewma_alpha=0.5, trend_window=3)


def run(scores: list[float]) -> list[list[str]]:
    state = ConversationState("c")
    return [apply_customer_score(state, s, RULES, s) for s in scores]


def test_signed_spans_minus_one_to_one():
    assert signed(np.array([1, 0, 0.0])) == -1.0
    assert signed(np.array([0, 1, 0.0])) == 0.0
    assert signed(np.array([0, 0, 1.0])) == 1.0
    assert abs(signed(np.array([0.5, 0.25, 0.25])) + 0.25) < 1e-9


def test_turn_score_is_the_worse_of_satisfaction_and_sentiment():
    polite_but_unhappy = turn_score(np.array([0.7, 0.3, 0.0]), np.array([0.1, 0.8, 0.1]))
    angry = turn_score(np.array([0.3, 0.6, 0.1]), np.array([0.9, 0.1, 0.0]))
    content = turn_score(np.array([0.0, 0.4, 0.6]), np.array([0.0, 0.5, 0.5]))
    assert abs(polite_but_unhappy + 0.7) < 1e-9 and abs(angry + 0.9) < 1e-9
    assert abs(content - 0.5) < 1e-9


def test_level_rule():
    assert run([0.0, -0.6]) == [[], ["negative_level", "sharp_drop"]]


def test_streak_rule_needs_consecutive_negative_turns():
    assert run([-0.3, -0.3, 0.1, -0.3, -0.3, -0.3]) == [[], [], [], [], [], ["negative_streak"]]


def test_sharp_drop_against_running_score():
    assert run([0.5, 0.4, -0.1]) == [[], [], ["sharp_drop"]]


def test_cooldown_holds_back_alerts_then_releases():
    fired = run([-0.9, -0.9, -0.9, -0.9, -0.9])
    assert fired[0] == ["negative_level"]
    assert fired[1] == [] and fired[2] == []  # cool-down of 2 customer turns
    assert "negative_level" in fired[3]


def test_running_score_and_trend():
    state = ConversationState("c")
    for s in (0.4, 0.0, -0.4):
        apply_customer_score(state, s, RULES, s)
    assert state.customer_turns == 3
    assert abs(state.running_score - (0.5 * -0.4 + 0.5 * (0.5 * 0.0 + 0.5 * 0.4))) < 1e-9
    slope, word = trend_of(state.recent_scores)
    assert abs(slope + 0.4) < 1e-9 and word == "worsening"
    assert trend_of([0.1]) == (0.0, "stable")


def test_default_thresholds_are_the_ones_chosen_on_validation():
    import json
    from pathlib import Path

    chosen = json.loads((Path(__file__).resolve().parents[2] / "reports/alert_thresholds.json")
                        .read_text())["chosen"]
    rules = AlertRules()
    assert (rules.level_threshold, rules.negative_threshold, rules.streak, rules.drop,
            rules.sentiment_threshold) == (
        chosen["level_threshold"], chosen["negative_threshold"], chosen["streak"],
        chosen["drop"], chosen["sentiment_threshold"])


def test_a_plain_complaint_alerts_by_its_sentiment_when_the_score_is_above_the_level():
    from dataclasses import replace

    rules = replace(RULES, sentiment_threshold=-0.3)
    assert apply_customer_score(ConversationState("a"), -0.35, rules, -0.35) == [
        "negative_sentiment"]
    assert apply_customer_score(ConversationState("b"), -0.25, rules, -0.25) == []
    assert apply_customer_score(ConversationState("c"), -0.6, rules, -0.6) == [
        "negative_level", "negative_sentiment"]
    assert apply_customer_score(ConversationState("d"), -0.35, RULES, -0.35) == []  # off
