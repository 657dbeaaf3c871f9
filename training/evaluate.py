"""Evaluate the served model as served, choose the alert thresholds, and write the report.

    python -m training.evaluate     # ~15 min on 2 cores: reports/served_model.{md,json}

1. Scores every USS valid and test dialogue with the exported ONNX encoder and step model,
   turn by turn (the step's own state, as the worker does): satisfaction metrics per corpus,
   ROC-AUC / PR-AUC of the turn score for dissatisfied turns, sentiment on MELD, SemEval-2016
   and GoEmotions test.
2. Chooses the alert thresholds on validation: the worker's own rule code replayed over the
   USS valid scores, whose precision's one-sided 95 % lower bound at the lowest training share
   of dissatisfied turns must be >= 0.6, and over the held-out valid service requests, of which
   at most 5 % may alert, and as many of the written valid requests; then the highest mean of
   two recalls, USS valid dissatisfied turns and the written valid service complaints
   (reports/alert_thresholds.json).
3. Replays the USS test dialogues and the hand-written check set through the real worker
   (Tansu + tritonserver + worker on 127.0.0.1, with those thresholds) and counts its alerts
   against the ratings; the topic words of each conversation's last event give distinct_share.
4. Gathers the fine-tuning rows (reports/served/finetune_*.json), calibration
   (reports/served/calibration.json) and topic figures (reports/topics.json).
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from google.protobuf import text_format
from scipy.stats import binomtest
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score
from tritonclient.grpc import model_config_pb2

from devstack import alert_replay
from training.data import (
    SENTIMENTS,
    USS_CORPORA,
    Dialogue,
    Utterance,
    label_3,
    label_5,
    load_goemotions,
    load_meld,
    load_review_sentences,
    load_semeval,
    load_service,
    load_uss,
    load_written,
    single_turns,
    uss_split,
)
from training.encoder import embed_texts
from training.finetune import satisfaction_metrics
from training.paths import CHECK_SET, MODEL_REPOSITORY, REPORTS
from worker.bow import BagOfWords
from worker.rules import AlertRules, apply_customer_score, signed, turn_score
from worker.state import ConversationState

MIN_PRECISION = 0.6
ALPHA = 0.05  # one-sided: the rule holds the precision's 95 % lower bound to MIN_PRECISION
MAX_REQUEST_ALERTS = 0.05  # the bar for neutral requests, held on valid requests
REQUEST_SETS = ("requests", "written_requests")  # single_turn_sets' sets under that cap


def step_parameter(key: str, repo: Path = MODEL_REPOSITORY):
    """A JSON parameter of the exported step model's config ("vocabulary", "about")."""
    cfg = text_format.Parse((repo / "step" / "config.pbtxt").read_text(),
                            model_config_pb2.ModelConfig())
    return json.loads(cfg.parameters[key].string_value)


def vocabulary(repo: Path = MODEL_REPOSITORY) -> list[str]:
    return step_parameter("vocabulary", repo)


def served_outputs(dialogues: list[Dialogue], repo: Path = MODEL_REPOSITORY) -> list[dict]:
    """Per dialogue, per turn: the step model's outputs (probs, satisfaction, sentiment,
    topic_words), the dialogues stepped in waves with their own state, as the worker does."""
    vectors = embed_texts(repo / "encoder/1/model.onnx",
                          [u.text for d in dialogues for u in d.utterances])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    step = ort.InferenceSession(str(repo / "step/1/model.onnx"), opts,
                                providers=["CPUExecutionProvider"])
    bow = BagOfWords(vocabulary(repo))
    starts = np.cumsum([0] + [len(d.utterances) for d in dialogues])
    state_names = [i.name for i in step.get_inputs()
                   if i.name not in ("embedding", "is_customer", "turn_bow")]
    width = {i.name: i.shape[1] for i in step.get_inputs()}
    state = {n: np.zeros((len(dialogues), width[n]), np.float32) for n in state_names}
    outs = [dict(probs=[], satisfaction=[], sentiment=[], topic_words=[]) for _ in dialogues]
    for t in range(max(len(d.utterances) for d in dialogues)):
        rows = [i for i, d in enumerate(dialogues) if len(d.utterances) > t]
        utts = [dialogues[i].utterances[t] for i in rows]
        feed = {"embedding": vectors[[starts[i] + t for i in rows]],
                "is_customer": np.array([[float(u.role == "customer")] for u in utts],
                                        np.float32),
                "turn_bow": bow.dense([u.text for u in utts]),
                **{n: state[n][rows] for n in state_names}}
        names = ["probs", "satisfaction", "sentiment", "topic_words",
                 *(f"{n}_out" for n in state_names)]
        res = dict(zip(names, step.run(names, feed), strict=True))
        for n in state_names:
            state[n][rows] = res[f"{n}_out"]
        for j, i in enumerate(rows):
            for k in outs[i]:
                outs[i][k].append(res[k][j])
    return [{k: np.array(v) for k, v in o.items()} for o in outs]


def uss_rows(dialogues: list[Dialogue], outs: list[dict]) -> dict[str, np.ndarray]:
    """Rated customer turns: satisfaction probs, 5-level probs, score, labels."""
    sat, lev, score, y3, y5 = [], [], [], [], []
    for d, o in zip(dialogues, outs, strict=True):
        for t, u in enumerate(d.utterances):
            if u.role == "customer" and u.scores:
                sat.append(o["satisfaction"][t])
                lev.append(o["probs"][t])
                score.append(turn_score(o["satisfaction"][t], o["sentiment"][t]))
                y3.append(label_3(u.scores))
                y5.append(label_5(u.scores))
    return {"sat": np.array(sat), "levels": np.array(lev), "score": np.array(score),
            "y3": np.array(y3), "y5": np.array(y5)}


def uss_metrics(rows: dict[str, np.ndarray]) -> dict:
    m = satisfaction_metrics(np.log(np.clip(rows["sat"], 1e-12, 1)), rows["y3"])
    bad = rows["y3"] == 0
    m["levels_macro_f1"] = round(100 * f1_score(rows["y5"], rows["levels"].argmax(1),
                                                average="macro"), 2)
    m["score_roc_auc"] = round(float(roc_auc_score(bad, -rows["score"])), 4)
    m["score_pr_auc"] = round(float(average_precision_score(bad, -rows["score"])), 4)
    m["dissatisfied_share"] = round(float(bad.mean()), 4)
    return m


def simulate(dialogues: list[Dialogue], outs: list[dict], rules: AlertRules):
    """The worker's rule code over precomputed scores -> (events, alerts) by turn id."""
    events, alerts = {}, {}
    for d, o in zip(dialogues, outs, strict=True):
        state = ConversationState(d.id)
        for t, u in enumerate(d.utterances):
            if u.role != "customer":
                continue
            score = turn_score(o["satisfaction"][t], o["sentiment"][t])
            events[f"{d.id}:{t}"] = {"score": score}
            fired = apply_customer_score(state, score, rules, signed(o["sentiment"][t]))
            if fired:
                alerts[f"{d.id}:{t}"] = {"rules": fired}
    return events, alerts


def precision_lower_bound(hits: int, alerts: int) -> float:
    """One-sided 95 % Wilson lower bound of a precision (hits of alerts)."""
    if alerts == 0:
        return 0.0
    ci = binomtest(hits, alerts).proportion_ci(confidence_level=1 - 2 * ALPHA, method="wilson")
    return float(ci.low)


def dissatisfied_share(dialogues: list[Dialogue]) -> float:
    """The share of rated customer turns rated dissatisfied (mean < 3)."""
    bad = [alert_replay.is_dissatisfied(u) for d in dialogues for u in d.utterances
           if u.role == "customer" and u.scores]
    return float(np.mean(bad))


@dataclass(frozen=True)
class SingleTurns:
    """One-turn conversations judged by the level and sentiment rules: each turn's score and
    sentiment view (signed), for held-out plain requests or for explicit negatives."""

    score: np.ndarray
    sentiment: np.ndarray

    @classmethod
    def of(cls, outs: list[dict]) -> SingleTurns:
        return cls(np.array([turn_score(o["satisfaction"][0], o["sentiment"][0]) for o in outs]),
                   np.array([signed(o["sentiment"][0]) for o in outs]))

    def alerts(self, rules: AlertRules) -> np.ndarray:
        """Which turns alert: on a one-turn conversation only the level and sentiment rules of
        worker.rules.apply_customer_score can fire."""
        return (self.score <= rules.level_threshold) | (self.sentiment <= rules.sentiment_threshold)

    def alerted(self, rules: AlertRules) -> float:
        return float(self.alerts(rules).mean())


def single_turn_sets(repo: Path = MODEL_REPOSITORY) -> dict[str, SingleTurns]:
    """Validation single turns: the plain requests, held-out CLINC150 / Banking77 ("requests")
    and written service turns ("written_requests"), on which alerts are capped; the written
    valid complaints ("complaints"), the explicit negatives the objective counts; and the
    SemEval-2016 and ABSA dev negatives ("negatives"), reported only."""
    requests = [d for d in load_service("valid") if d.utterances[0].sentiment == "neutral"]
    written = load_written("valid")
    negatives = [d for d in load_semeval("dev") + load_review_sentences("dev")
                 if d.utterances[0].sentiment == "negative"]
    sets = {"requests": requests,
            "written_requests": [d for d in written if d.utterances[0].sentiment == "neutral"],
            "complaints": [d for d in written if d.utterances[0].sentiment == "negative"],
            "negatives": negatives}
    return {k: SingleTurns.of(served_outputs(ds, repo)) for k, ds in sets.items()}


def choose_thresholds(valid: dict[str, tuple[list[Dialogue], list[dict]]],
                      design_prevalence: float,
                      single: dict[str, SingleTurns] | None = None) -> tuple[dict, list]:
    """Grid over the rules' thresholds on validation (corpus -> dialogues, outputs). A cell
    passes when the one-sided 95 % lower bound of its precision, at `design_prevalence`, is >=
    MIN_PRECISION and, with `single`, when at most MAX_REQUEST_ALERTS of each of its
    REQUEST_SETS alert. The passing cell with the highest recall wins (then precision); with
    `single`, recall is the mean of the USS recall and the share of written service complaints
    ("complaints") alerted, and the grid adds the sentiment rule (USS alone never asks for it:
    its dissatisfied customers are polite).
    - The bound: on a few hundred validation alerts a point estimate just over the bar is
      within one standard error of it, and the passing cell with the highest recall is the one
      most likely to owe its pass to luck.
    - The prevalence: precision falls with the share of dissatisfied turns (18 % in MWOZ test
      against 26 % in its train and valid), so each corpus's alerts on dissatisfied and on other
      turns are reweighted from its validation share to the design share before pooling."""
    share = {c: dissatisfied_share(ds) for c, (ds, _) in valid.items()}
    grid = []
    levels = np.round(np.arange(-0.9, 0.01, 0.05), 2)
    sentiments = (None, *np.round(np.arange(-0.6, -0.04, 0.05), 2)) if single else (None,)
    for level, neg_gap, drop, sent in itertools.product(levels, (None, 0.1, 0.2), (None, 0.5, 0.7),
                                                        sentiments):
        if sent is not None and sent <= level:
            continue  # the level rule already alerts on every such turn
        rules = AlertRules(level_threshold=float(level),
                           negative_threshold=-2.0 if neg_gap is None
                           else round(float(level + neg_gap), 2),
                           streak=3, drop=9.0 if drop is None else drop,
                           sentiment_threshold=-2.0 if sent is None else float(sent))
        hits = others = hits_w = others_w = bad = caught = 0.0
        for c, (dialogues, outs) in valid.items():
            events, alerts = simulate(dialogues, outs, rules)
            m = alert_replay.alert_metrics(dialogues, "", events, alerts, rules.cooldown_turns)
            h, o = m["alerts_on_dissatisfied"], m["alerts"] - m["alerts_on_dissatisfied"]
            hits, others = hits + h, others + o
            hits_w += h * design_prevalence / share[c]
            others_w += o * (1 - design_prevalence) / (1 - share[c])
            bad += m["dissatisfied_turns"]
            caught += m["dissatisfied_alerted"] + m["dissatisfied_in_cooldown"]
        n = int(hits + others)
        at_design = hits_w / (hits_w + others_w) if n else 0.0
        cell = {"level_threshold": rules.level_threshold,
                "negative_threshold": rules.negative_threshold, "streak": rules.streak,
                "drop": rules.drop, "sentiment_threshold": rules.sentiment_threshold,
                "precision": hits / n if n else 0.0,
                "precision_at_design": round(at_design, 4),
                "precision_lower": round(precision_lower_bound(round(n * at_design), n), 4),
                "recall": caught / bad, "alerts": n}
        if single:
            for k, turns in single.items():
                cell[f"{k}_alerted"] = round(turns.alerted(rules), 4)
            cell["objective"] = (cell["recall"] + cell["complaints_alerted"]) / 2
        grid.append(cell)
    ok = [g for g in grid if g["precision_lower"] >= MIN_PRECISION
          and all(g.get(f"{k}_alerted", 0.0) <= MAX_REQUEST_ALERTS for k in REQUEST_SETS)]
    best = max(ok, key=lambda g: (round(g.get("objective", g["recall"]), 6), g["precision"]))
    return best, grid


def thresholds_json(doc: dict, grid: list[dict]) -> str:
    """reports/alert_thresholds.json: `doc`, then every cell of the grid as one line of
    values under "grid_columns" (a few thousand cells)."""
    columns = list(grid[0])
    rows = ",\n  ".join(json.dumps([round(g.get(c), 4) if isinstance(g.get(c), float)
                                     else g.get(c) for c in columns]) for g in grid)
    head = json.dumps({**doc, "grid_columns": columns}, indent=1)
    return f'{head[:-2]},\n "grid": [\n  {rows}\n ]\n}}\n'


def rules_of(cell: dict) -> AlertRules:
    return AlertRules(**{k: cell[k] for k in ("level_threshold", "negative_threshold", "streak",
                                              "drop", "sentiment_threshold")})


def ece_rows() -> dict:
    path = REPORTS / "served" / "calibration.json"
    return json.loads(path.read_text()) if path.exists() else {}


def sentiment_scores() -> dict:
    out = {}
    for name, dialogues in (("meld", load_meld("test")), ("semeval", load_semeval("test")),
                            ("goemotions", load_goemotions("test"))):
        outs = served_outputs(dialogues)
        y, p = [], []
        for d, o in zip(dialogues, outs, strict=True):
            for t, u in enumerate(d.utterances):
                if u.sentiment in SENTIMENTS:
                    y.append(SENTIMENTS.index(u.sentiment))
                    p.append(int(o["sentiment"][t].argmax()))
        out[name] = {"n": len(y), "macro_f1": round(100 * f1_score(y, p, average="macro"), 2)}
    return out


def request_alerts(rules: AlertRules, repo: Path = MODEL_REPOSITORY) -> dict:
    """Held-out service requests (CLINC150 + Banking77 test, training/service.py), each a
    one-turn conversation: the share of the plain ones that the level or sentiment rule alerts
    on and that the sentiment head reads as neutral; the share of its few complaints alerted."""
    dialogues = load_service("test")
    outs = served_outputs(dialogues, repo)
    turns = SingleTurns.of(outs)
    score = turns.score
    neutral = np.array([o["sentiment"][0].argmax() == 1 for o in outs])
    plain = np.array([d.utterances[0].sentiment == "neutral" for d in dialogues])
    alerted = turns.alerts(rules)
    return {"n": int(plain.sum()), "alerted": round(float(alerted[plain].mean()), 4),
            "sentiment_neutral": round(float(neutral[plain].mean()), 4),
            "mean_score": round(float(score[plain].mean()), 4),
            "complaints_n": int((~plain).sum()),
            "complaints_alerted": round(float(alerted[~plain].mean()), 4)}


def written_alerted(rules: AlertRules, repo: Path = MODEL_REPOSITORY) -> dict:
    """The valid split of the written service turns (training/service.py), each a one-turn
    conversation: the share of complaints, requests and praise alerted (the thresholds are
    chosen on its complaints and requests: choose_thresholds)."""
    dialogues = load_written("valid")
    alerted = SingleTurns.of(served_outputs(dialogues, repo)).alerts(rules)
    labels = np.array([d.utterances[0].sentiment for d in dialogues])
    return {kind: {"n": int((labels == s).sum()),
                   "alerted": round(float(alerted[labels == s].mean()), 4)}
            for kind, s in (("complaint", "negative"), ("neutral", "neutral"),
                            ("praise", "positive"))}


def external_complaints(rules: AlertRules, path: Path, repo: Path = MODEL_REPOSITORY) -> dict:
    """Tweets to companies' support accounts labelled complaint or not (Preotiuc-Pietro et al.,
    ACL 2019: the corpus training/complaint_probe.py reads; not kept here, no licence), each a
    one-turn conversation: the share of complaints and of other tweets alerted. Real customers
    of many domains, written by nobody on this team: an outside check of the complaint rules."""
    import csv

    from training.complaint_probe import clean

    with path.open(encoding="utf-8") as f:
        rows = [(clean(r[1]), r[2] == "1") for r in csv.reader(f) if len(r) >= 3]
    dialogues = single_turns("complaints", [(t, "") for t, _ in rows])
    alerted = SingleTurns.of(served_outputs(dialogues, repo)).alerts(rules)
    bad = np.array([c for _, c in rows])
    return {"n": len(rows), "complaints": int(bad.sum()),
            "complaints_alerted": round(float(alerted[bad].mean()), 4),
            "others_alerted": round(float(alerted[~bad].mean()), 4)}


def finetune_rows() -> dict:
    """Fine-tuning runs per row (mean ± std over seeds), GPU and CPU files side by side."""
    out = {}
    for path in sorted((REPORTS / "served").glob("finetune_*.json")):
        device = path.stem.rsplit("_", 1)[-1]  # finetune_gpu, finetune_cpu, finetune_step_cpu
        runs = json.loads(path.read_text())["runs"]
        for row in sorted({r["row"] for r in runs}):
            mine = [r for r in runs if r["row"] == row]
            cell = {"seeds": [r["seed"] for r in mine], "device": mine[0]["device"],
                    "train_minutes": round(float(np.mean([r["train_minutes"] for r in mine])),
                                           2),
                    "best_epochs": [r["best_epoch"] for r in mine]}
            for corpus in USS_CORPORA:
                for k in ("accuracy", "macro_f1", "neg_f1", "neg_roc_auc"):
                    v = [r["test"]["uss"][corpus][k] for r in mine]
                    cell[f"{corpus}_{k}"] = [round(float(np.mean(v)), 4 if "auc" in k else 2),
                                             round(float(np.std(v)), 4 if "auc" in k else 2)]
            for s in ("meld", "semeval", "goemotions"):
                cell[f"{s}_sentiment_macro_f1"] = round(float(np.mean(
                    [r["test"][s]["sentiment"]["macro_f1"] for r in mine])), 2)
            if all("service" in r["test"] for r in mine):
                cell["service_requests_alarmed"] = round(float(np.mean(
                    [r["test"]["service"]["alarm_share"] for r in mine])), 4)
            out[f"{row}@{device}"] = cell
    return out


def cross_domain(rows: dict) -> dict:
    """Macro-F1 on each corpus's test: trained on that corpus (in-domain) vs on the other."""
    out = {}
    for test, other in (("SGD", "MWOZ"), ("MWOZ", "SGD")):
        cross = rows.get(f"{other.lower()}_to_{test.lower()}@gpu")
        inside = rows.get(f"{test.lower()}_to_{other.lower()}@gpu")
        if cross and inside:
            c, i = cross[f"{test}_macro_f1"][0], inside[f"{test}_macro_f1"][0]
            out[f"{other}->{test}"] = {"in_domain_macro_f1": i, "cross_domain_macro_f1": c,
                                       "drop": round(i - c, 2)}
    return out


def uss_parts() -> dict[str, dict[str, list[Dialogue]]]:
    """train / valid / test -> corpus -> dialogues of the published split (each file parsed
    once)."""
    corpora = {c: (load_uss(c), uss_split(c)) for c in USS_CORPORA}
    return {part: {c: [ds[i] for i in idx[part]] for c, (ds, idx) in corpora.items()}
            for part in ("train", "valid", "test")}


def candidate(repo: Path, external: Path | None = None) -> dict:
    """A model repository judged as the served one would be, without a worker: the thresholds
    the same rule chooses on its validation outputs, then at them (the worker's rule code over
    its ONNX outputs) the check set and the held-out test requests. For comparing a candidate
    with the served model before serving it."""
    split = uss_parts()
    design = min(dissatisfied_share(ds) for ds in split["train"].values())
    valid = {c: (ds, served_outputs(ds, repo)) for c, ds in split["valid"].items()}
    best, _ = choose_thresholds(valid, design, single_turn_sets(repo))
    rules = rules_of(best)
    items = json.loads(CHECK_SET.read_text())["items"]
    checks = served_outputs([Dialogue(i["id"], (Utterance("agent", i["greeting"]),
                                                Utterance("customer", i["text"])))
                             for i in items], repo)
    alerted = SingleTurns.of([{k: v[-1:] for k, v in o.items()} for o in checks]).alerts(rules)
    kinds = np.array([i["kind"] for i in items])
    return {"step": step_parameter("about", repo), "chosen": best,
            "check_set_alerted": {k: round(float(alerted[kinds == k].mean()), 4)
                                  for k in ("complaint", "neutral", "praise")},
            "service_requests_test": request_alerts(rules, repo),
            "written_valid_alerted": written_alerted(rules, repo),
            **({"external_complaints": external_complaints(rules, external, repo)}
               if external else {})}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--skip-replay", action="store_true", help="no worker replay (quick look)")
    p.add_argument("--requests-only", type=Path, default=None, metavar="OUT",
                   help="only the held-out service requests, at levels -0.2 and -0.3, to OUT")
    p.add_argument("--repo", type=Path, default=MODEL_REPOSITORY, help="with --requests-only")
    p.add_argument("--candidates", type=Path, nargs="+", default=None, metavar="REPO",
                   help="only judge these model repositories offline (candidate()), to --out")
    p.add_argument("--out", type=Path, default=REPORTS / "served" / "candidates.json")
    p.add_argument("--external", type=Path, default=None, metavar="CSV",
                   help="with --candidates: complaints-data.csv (external_complaints())")
    args = p.parse_args()
    t0 = time.time()
    if args.candidates:
        args.out.write_text(json.dumps({
            "command": "python -m training.evaluate --candidates "
                       + " ".join(str(r) for r in args.candidates)
                       + (" --external complaints-data.csv" if args.external else ""),
            "note": "thresholds chosen on validation only; the check set and test requests "
                    "are read at them, offline, for information",
            "repos": {str(r): candidate(r, args.external) for r in args.candidates}},
            indent=1) + "\n")
        return
    if args.requests_only is not None:
        args.requests_only.write_text(json.dumps({
            "command": f"python -m training.evaluate --requests-only {args.requests_only} "
                       f"--repo {args.repo}", "step": step_parameter("about", args.repo),
            "levels": {str(lv): request_alerts(AlertRules(level_threshold=lv,
                                                          sentiment_threshold=-2.0), args.repo)
                       for lv in (-0.2, -0.3)}},
            indent=1) + "\n")
        return
    split = uss_parts()
    outs = {part: {c: served_outputs(ds) for c, ds in split[part].items()}
            for part in ("valid", "test")}
    uss_test = {c: uss_metrics(uss_rows(split["test"][c], outs["test"][c])) for c in USS_CORPORA}
    train_share = {c: dissatisfied_share(ds) for c, ds in split["train"].items()}
    design = min(train_share.values())
    single = single_turn_sets()
    best, grid = choose_thresholds({c: (split["valid"][c], outs["valid"][c])
                                    for c in USS_CORPORA}, design, single)
    (REPORTS / "alert_thresholds.json").write_text(thresholds_json(
        {"command": "python -m training.evaluate",
         "rule": f"one-sided {1 - ALPHA:.0%} Wilson lower bound of the precision >= "
                 f"{MIN_PRECISION} on USS valid (MWOZ + SGD), each corpus reweighted to the "
                 "design prevalence (the lowest training share of dissatisfied turns), and at "
                 f"most {MAX_REQUEST_ALERTS:.0%} of the held-out valid service requests "
                 f"(n = {len(single['requests'].score)}) and of the written valid requests "
                 f"(n = {len(single['written_requests'].score)}) alerted; then the highest "
                 "objective: the mean of the USS valid recall and the share of the written "
                 f"valid complaints (n = {len(single['complaints'].score)}) alerted",
         "train_dissatisfied_share": train_share,
         "design_prevalence": round(design, 4), "chosen": best}, grid))
    print("thresholds", best, flush=True)
    result = {"uss_test": uss_test, "calibration": {"heads": {
                  k: v for k, v in ece_rows().items() if isinstance(v, dict)}},
              "sentiment_test": sentiment_scores(), "alert_thresholds_valid": best,
              "service_requests_test": request_alerts(rules_of(best))}
    rows = finetune_rows()
    result["finetune"] = rows
    result["cross_domain"] = cross_domain(rows)
    topics_path = REPORTS / "topics.json"
    result["topic_words"] = json.loads(topics_path.read_text()) if topics_path.exists() else {}
    if not args.skip_replay:
        checks = json.loads(CHECK_SET.read_text())["items"]
        env = {"CHAT_ALERT_LEVEL_THRESHOLD": str(best["level_threshold"]),
               "CHAT_ALERT_NEGATIVE_THRESHOLD": str(best["negative_threshold"]),
               "CHAT_ALERT_STREAK": str(best["streak"]), "CHAT_ALERT_DROP": str(best["drop"]),
               "CHAT_ALERT_SENTIMENT_THRESHOLD": str(best["sentiment_threshold"])}
        replay = alert_replay.run(split["test"], AlertRules().cooldown_turns, env, checks)
        result["replay"] = replay_summary(replay, split["test"])
    result.update(headline(result))
    result["seconds"] = round(time.time() - t0, 1)
    result["command"] = "python -m training.evaluate"
    (REPORTS / "served_model.json").write_text(json.dumps(result, indent=1) + "\n")
    if "replay" in result:
        (REPORTS / "served_model.md").write_text(markdown(result))
    print(json.dumps({k: v for k, v in result.items() if k != "finetune"}, indent=1)[:6000])


def headline(r: dict) -> dict:
    """The issue's summary keys (fractions 0-1, F1 and accuracy in %)."""
    about = step_parameter("about")
    served = [run for path in sorted((REPORTS / "served").glob("finetune_*.json"))
              for run in json.loads(path.read_text())["runs"]
              if (run["row"], run["seed"]) == (about.get("row"), about.get("seed"))]
    run = served[0] if served else {}
    out = {"encoder": {"fine_tuned": True, "row": about.get("row"), "seed": about.get("seed"),
                       "device": "gpu" if about.get("device", "cpu") != "cpu" else "cpu",
                       "device_name": about.get("device"),
                       "trained_layers": 6 - run["frozen_layers"] if run else None,
                       "frozen_layers": run.get("frozen_layers"),
                       "train_minutes": run.get("train_minutes"),
                       "top2_gpu_train_minutes": r["finetune"].get("top2@gpu", {}).get(
                           "train_minutes")},
           "calibration": {"head": "satisfaction", **{
               k: r["calibration"]["heads"]["satisfaction"][k]
               for k in ("ece_before", "ece_after")}, "heads": r["calibration"]["heads"]}}
    topics = r["topic_words"]
    rep = r.get("replay")
    if rep:
        out["alerts"] = {k: rep["MWOZ+SGD"][k] for k in ("precision", "recall")}
        chk = rep["checks"]["by_kind"]
        out["check_set"] = {"complaints_alerted": chk["complaint"]["alerted"],
                            "neutral_alerted": chk["neutral"]["alerted"],
                            "praise_alerted": chk["praise"]["alerted"],
                            "n": sum(v["n"] for v in chk.values())}
        out["topic_words"] = {
            "diversity": topics["nmf_topics"]["diversity"],
            "npmi": topics["nmf_topics"]["npmi_train"],
            "distinct_share": rep["topic_words_final"]["distinct_share"], **topics}
    return out


def replay_summary(replay: dict, test: dict[str, list[Dialogue]]) -> dict:
    """Alerts per corpus and pooled (counts added), check-set shares, topic-word spread."""
    out: dict = {}
    keys = ("alerts", "alerts_on_dissatisfied", "dissatisfied_turns", "dissatisfied_alerted",
            "dissatisfied_in_cooldown", "conv_with_dissatisfied", "conv_without_dissatisfied")
    pooled = Counter()
    for c in USS_CORPORA:
        m = {k: v for k, v in replay[c].items() if k != "scored"}
        out[c] = m
        pooled.update({k: m[k] for k in keys})
        pooled["conv_bad_alerted"] += round((m["conv_with_dissatisfied_alerted"] or 0)
                                            * m["conv_with_dissatisfied"])
        pooled["conv_ok_alerted"] += round((m["conv_without_dissatisfied_alerted"] or 0)
                                           * m["conv_without_dissatisfied"])
        scored = replay[c]["scored"]
        bad = np.array([b for _, b in scored])
        s = np.array([x for x, _ in scored])
        out[c]["score_roc_auc"] = round(float(roc_auc_score(bad, -s)), 4)
        out[c]["score_pr_auc"] = round(float(average_precision_score(bad, -s)), 4)
    out["MWOZ+SGD"] = {
        "precision": round(pooled["alerts_on_dissatisfied"] / max(1, pooled["alerts"]), 4),
        "recall": round((pooled["dissatisfied_alerted"] + pooled["dissatisfied_in_cooldown"])
                        / max(1, pooled["dissatisfied_turns"]), 4),
        "conv_with_dissatisfied_alerted": round(
            pooled["conv_bad_alerted"] / max(1, pooled["conv_with_dissatisfied"]), 4),
        "conv_without_dissatisfied_alerted": round(
            pooled["conv_ok_alerted"] / max(1, pooled["conv_without_dissatisfied"]), 4),
        **{k: pooled[k] for k in keys}}
    out["checks"] = replay["checks"]
    events = replay["_events"]
    finals = []
    for c in USS_CORPORA:
        for d in test[c]:
            last = events.get(f"{c}-{d.id}:{len(d.utterances) - 1}")
            if last is not None:
                finals.append(tuple(sorted(last["topic_words"])))
    common, n_common = Counter(finals).most_common(1)[0]
    out["topic_words_final"] = {"conversations": len(finals),
                                "distinct_share": round(1 - n_common / len(finals), 4),
                                "most_common": list(common), "most_common_count": n_common,
                                "unique_sets": len(set(finals))}
    return out



def bars(r: dict) -> list[str]:
    """The issue's bars, met or not, from this report and reports/benchmark.json."""
    bench = REPORTS / "benchmark.json"
    state = (json.loads(bench.read_text())["summary"]["state_bytes_per_conversation"]
             if bench.exists() else None)
    rows = [("USS test macro-F1, MWOZ", r["uss_test"]["MWOZ"]["macro_f1"], 54, True),
            ("USS test macro-F1, SGD", r["uss_test"]["SGD"]["macro_f1"], 62, True)]
    if "alerts" in r:
        rows += [("worker alerts precision (test replay)", r["alerts"]["precision"], 0.6, True),
                 ("worker alerts recall (test replay)", r["alerts"]["recall"], 0.4, True),
                 ("check set: complaints alerted", r["check_set"]["complaints_alerted"], 0.9,
                  True),
                 ("check set: neutral requests alerted", r["check_set"]["neutral_alerted"],
                  0.05, False),
                 ("topic words distinct_share", r["topic_words"]["distinct_share"], 0.5, True)]
    if state is not None:
        rows.append(("state bytes per conversation (reports/benchmark.json)", state, 8192,
                     False))
    out = ["| bar | measured | goal | met |", "|---|---|---|---|"]
    for name, value, goal, higher in rows:
        ok = value >= goal if higher else value <= goal
        out.append(f"| {name} | {value:.4g} | {'≥' if higher else '≤'} {goal:g} | "
                   f"{'yes' if ok else 'NO'} |")
    return out


def pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f} %"


def markdown(r: dict) -> str:
    """The report a reader opens: every figure of served_model.json, in tables."""
    lines = ["# The served model", "",
             f"Command: `{r['command']}` ({r['seconds'] / 60:.1f} min on this 2-core CPU). "
             "Fine-tuning rows: `python -m training.finetune` (see reports/served/). "
             "Figures in % unless marked; AUCs are fractions.", "", *bars(r), "",
             "## USS test (published split), the served ONNX models turn by turn", "",
             "| corpus | accuracy | macro-F1 | negative F1 | neg ROC-AUC (P(dissatisfied)) "
             "| score ROC-AUC | score PR-AUC | 5-level macro-F1 | dissatisfied share |",
             "|---|---|---|---|---|---|---|---|---|"]
    for c, m in r["uss_test"].items():
        lines.append(f"| {c} | {m['accuracy']} | {m['macro_f1']} | {m['neg_f1']} | "
                     f"{m['neg_roc_auc']} | {m['score_roc_auc']} | {m['score_pr_auc']} | "
                     f"{m['levels_macro_f1']} | {pct(m['dissatisfied_share'])} |")
    lines += ["", "Published accuracies to beat (USDA/ASAP, same split): MWOZ 58.1, SGD 64.8.",
              "", "## Sentiment head (test sets)", "", "| set | n | macro-F1 |", "|---|---|---|"]
    lines += [f"| {k} | {v['n']} | {v['macro_f1']} |" for k, v in r["sentiment_test"].items()]
    lines += ["", "## Calibration (temperature per head, fitted on validation)", "",
              "| head | n | temperature | ECE before | ECE after |", "|---|---|---|---|---|"]
    lines += [f"| {k} | {v['n']} | {v['temperature']} | {v['ece_before']} | {v['ece_after']} |"
              for k, v in r["calibration"]["heads"].items()]
    b = r["alert_thresholds_valid"]
    lines += ["", "## Alerts", "",
              "Thresholds chosen on validation with the worker's rule code (the USS valid "
              "precision's one-sided 95 % Wilson lower bound, at the design share of "
              f"dissatisfied turns, ≥ {MIN_PRECISION}; held-out valid requests alerted ≤ "
              f"{MAX_REQUEST_ALERTS:.0%}, and as many written valid requests; then the highest "
              "mean of the USS valid recall and the share of written valid complaints alerted): "
              "level ≤ "
              f"{b['level_threshold']}, negative ≤ "
              f"{b['negative_threshold']} for a streak of {b['streak']}, drop ≥ {b['drop']}, "
              f"sentiment ≤ {b['sentiment_threshold']}; "
              f"valid precision {b['precision']:.3f} (lower bound {b['precision_lower']:.3f}), "
              f"recall {b['recall']:.3f}; valid requests alerted {pct(b.get('requests_alerted'))}, "
              f"written valid requests {pct(b.get('written_requests_alerted'))}, written valid "
              f"complaints {pct(b.get('complaints_alerted'))}, SemEval / ABSA dev negatives "
              f"{pct(b.get('negatives_alerted'))}. "
              "A value of -2 or 9 switches a rule off.", ""]
    rep = r.get("replay")
    if rep:
        lines += ["Test dialogues replayed through the real worker (Tansu + tritonserver + "
                  "worker), alerts counted against the ratings:", "",
                  "| corpus | alerts | precision | recall | conversations with a dissatisfied "
                  "turn alerted | conversations without one alerted | score ROC-AUC |",
                  "|---|---|---|---|---|---|---|"]
        for c in ("MWOZ", "SGD", "MWOZ+SGD"):
            m = rep[c]
            lines.append(f"| {c} | {m['alerts']} | {m['precision']:.3f} | {m['recall']:.3f} | "
                         f"{pct(m['conv_with_dissatisfied_alerted'])} | "
                         f"{pct(m['conv_without_dissatisfied_alerted'])} | "
                         f"{m.get('score_roc_auc', '-')} |")
        chk = rep["checks"]["by_kind"]
        lines += ["", "Hand-written check set (training/check_set.json; never trained or tuned "
                  "on), each customer turn after a neutral agent greeting, through the worker:",
                  "", "| kind | n | alerted |", "|---|---|---|"]
        lines += [f"| {k} | {v['n']} | {pct(v['alerted'])} |" for k, v in chk.items()]
        missed = [i for i in rep["checks"]["items"]
                  if (i["kind"] == "complaint") != i["alerted"] and i["kind"] != "praise"]
        if missed:
            lines += ["", "Check-set errors (complaints not alerted, neutral requests alerted):",
                      ""]
            lines += [f"- {i['id']} ({i['kind']}, score {i['score']:+.2f})" for i in missed]
        q = r.get("service_requests_test")
        if q:
            lines += ["", f"Held-out plain service requests (CLINC150 + Banking77 test, "
                      f"training/service.py; n = {q['n']}), each a one-turn conversation: "
                      f"{pct(q['alerted'])} alert (level or sentiment rule), the sentiment "
                      f"head reads {pct(q['sentiment_neutral'])} as neutral."]
        t = rep["topic_words_final"]
        lines += ["", f"Topic words: {t['unique_sets']} different final sets over "
                  f"{t['conversations']} test conversations; distinct_share "
                  f"{t['distinct_share']:.3f} (most common: {', '.join(t['most_common'])}, "
                  f"{t['most_common_count']} conversations)."]
    lines += ["", "## Fine-tuning rows (test, mean ± std over seeds)", "",
              "| row | device | seeds | minutes | MWOZ macro-F1 | SGD macro-F1 | MWOZ neg F1 | "
              "SGD neg F1 | MELD / SemEval / GoEmotions sentiment macro-F1 | service "
              "requests alarmed |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, c in r["finetune"].items():
        lines.append(
            f"| {name} | {c['device']} | {len(c['seeds'])} | {c['train_minutes']} | "
            f"{c['MWOZ_macro_f1'][0]} ± {c['MWOZ_macro_f1'][1]} | "
            f"{c['SGD_macro_f1'][0]} ± {c['SGD_macro_f1'][1]} | {c['MWOZ_neg_f1'][0]} | "
            f"{c['SGD_neg_f1'][0]} | {c['meld_sentiment_macro_f1']} / "
            f"{c['semeval_sentiment_macro_f1']} / {c['goemotions_sentiment_macro_f1']} | "
            f"{pct(c.get('service_requests_alarmed'))} |")
    lines += ["", "## Cross-domain (train on one USS corpus, test on the other)", "",
              "| direction | in-domain macro-F1 | cross-domain macro-F1 | drop |",
              "|---|---|---|---|"]
    lines += [f"| {k} | {v['in_domain_macro_f1']} | {v['cross_domain_macro_f1']} | "
              f"{v['drop']} |" for k, v in r["cross_domain"].items()]
    topics = r.get("topic_words") or {}
    if topics:
        new, old = topics["nmf_topics"], topics.get("nvdm_overall_served_before") or {}
        lines += ["", "## Topic words (`python -m training.topics`, reports/topics.json)", "",
                  "| topic model | diversity | NPMI (training texts) | distinct_share (test) |",
                  "|---|---|---|---|",
                  f"| NMF fold-in, served | {new['diversity']:.3f} | {new['npmi_train']:.3f} | "
                  f"{topics.get('distinct_share', new['distinct_share_test']):.3f} "
                  "(worker replay) |"]
        if old:
            lines.append(f"| NVDM (TML's overall topic model, served before) | "
                         f"{old['diversity']:.3f} | {old['npmi_train']:.3f} | "
                         f"{old['distinct_share_test']:.3f} |")
        lines += ["", "Topics (top 10 words):", ""]
        lines += [f"{k + 1}. {t}" for k, t in enumerate(new["topics"])]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
