"""Conversation score, trend and alert rules for customer turns (pure)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from worker.state import ConversationState


@dataclass(frozen=True)
class AlertRules:
    # defaults: "chosen" in reports/alert_thresholds.json (python -m training.evaluate, on
    # validation: the USS precision's one-sided 95 % lower bound >= 0.6, at most 5 % of plain
    # requests alerted, then the highest mean recall of dissatisfied turns and service complaints)
    level_threshold: float = -0.45  # a customer turn at or below this score alerts
    negative_threshold: float = -0.25  # a customer turn at or below this counts as negative
    streak: int = 3  # this many negative customer turns in a row alert
    drop: float = 9.0  # a fall of this much below the running score alerts (9: off)
    # a customer turn whose sentiment (P(positive) - P(negative)) is at or below this alerts,
    # whatever its satisfaction: a plain complaint (-2: off)
    sentiment_threshold: float = -0.2
    cooldown_turns: int = 3  # customer turns after an alert during which no new alert is raised
    ewma_alpha: float = 0.4  # weight of the newest turn in the running score
    trend_window: int = 5  # customer turns the trend slope is fitted on


def signed(probs: np.ndarray) -> float:
    """P(positive) - P(negative) of a (negative, neutral, positive) distribution: -1..1."""
    p = probs.astype(np.float64)
    return float(np.clip((p[2] - p[0]) / p.sum(), -1.0, 1.0))


def turn_score(satisfaction: np.ndarray, sentiment: np.ndarray) -> float:
    """The turn's score: the worse of satisfaction (USS raters' view of a customer) and
    sentiment (explicit negativity), each P(positive) - P(negative). A polite but dissatisfied
    customer and an angry one both score low."""
    return min(signed(satisfaction), signed(sentiment))


def trend_of(scores: list[float]) -> tuple[float, str]:
    """Least-squares slope of the recent scores per turn, and a word for it."""
    if len(scores) < 2:
        return 0.0, "stable"
    slope = float(np.polyfit(np.arange(len(scores), dtype=np.float64), scores, 1)[0])
    return slope, ("improving" if slope > 0.05 else "worsening" if slope < -0.05 else "stable")


def apply_customer_score(state: ConversationState, score: float, rules: AlertRules,
                         sentiment: float) -> list[str]:
    """Update the running score, streak and cool-down with one customer turn (its score, and
    its sentiment view signed); return the alert rules it fires (empty when none fires or the
    cool-down holds them back)."""
    previous = state.running_score
    fired = []
    if score <= rules.level_threshold:
        fired.append("negative_level")
    if sentiment <= rules.sentiment_threshold:
        fired.append("negative_sentiment")
    state.negative_streak = state.negative_streak + 1 if score <= rules.negative_threshold else 0
    if state.negative_streak >= rules.streak:
        fired.append("negative_streak")
    if previous is not None and previous - score >= rules.drop:
        fired.append("sharp_drop")

    state.customer_turns += 1
    state.running_score = score if previous is None else (
        rules.ewma_alpha * score + (1 - rules.ewma_alpha) * previous)
    state.recent_scores = [*state.recent_scores[-(rules.trend_window - 1):], score]

    cooling = state.turns_since_alert is not None and state.turns_since_alert < rules.cooldown_turns
    if state.turns_since_alert is not None:
        state.turns_since_alert += 1
    if fired and not cooling:
        state.turns_since_alert = 0
        return fired
    return []
