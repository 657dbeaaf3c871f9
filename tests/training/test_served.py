"""The served model: streaming equals the full sequence, ONNX equals torch (encoder and step),
configs match graphs, training runs on a slice and changes only the trained weights, and the
calibration helpers do what they say."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from training import topics as topic_model
from training.export import ServedStep, ece, fit_temperature, softmax
from training.model import HEADS, Step, load
from training.paths import MODEL_REPOSITORY, ROOT, minilm_dir
from worker.bow import BagOfWords
from worker.tokenizer import TurnTokenizer, default_tokenizer_path

CHECKPOINT = ROOT / "training/checkpoints/served.pt"
TOP2 = ROOT / "training/checkpoints/top2.pt"  # end to end fine-tuned: the step rows' start
ONNX_TYPES = {onnx.TensorProto.FLOAT: "TYPE_FP32", onnx.TensorProto.INT64: "TYPE_INT64"}


@pytest.fixture(scope="module")
def model():
    return load(CHECKPOINT, minilm_dir())[0]


def step_config() -> model_config_pb2.ModelConfig:
    return text_format.Parse((MODEL_REPOSITORY / "step/config.pbtxt").read_text(),
                             model_config_pb2.ModelConfig())


@pytest.mark.parametrize("turns", [1, 2, 7, 33, 60])
def test_step_by_step_equals_full_sequence(model, turns):
    rng = np.random.default_rng(turns)
    emb = torch.from_numpy(rng.standard_normal((1, turns, 384)).astype(np.float32))
    cust = torch.from_numpy((rng.random((1, turns, 1)) > 0.5).astype(np.float32))
    with torch.no_grad():
        full = {n: torch.softmax(v[0], -1) for n, v in model.dialogue(emb, cust).items()}
        step, h = Step(model, {}), torch.zeros(1, model.cfg.hidden)
        streamed = {n: [] for n in HEADS}
        for t in range(turns):
            *probs, h = step(emb[:, t], cust[:, t], h)
            for n, p in zip(HEADS, probs, strict=True):
                streamed[n].append(p[0])
    for n in HEADS:
        assert torch.allclose(torch.stack(streamed[n]), full[n], atol=1e-5), n


@pytest.mark.parametrize("name", ["encoder", "step"])
def test_config_pbtxt_matches_the_exported_graph(name):
    config = text_format.Parse((MODEL_REPOSITORY / name / "config.pbtxt").read_text(),
                               model_config_pb2.ModelConfig())
    assert config.name == name and config.backend == "onnxruntime"
    assert config.max_batch_size > 0 and config.HasField("dynamic_batching")
    graph = onnx.load(str(MODEL_REPOSITORY / name / "1/model.onnx"), load_external_data=False)
    tensors = {t.name: t for t in [*graph.graph.input, *graph.graph.output]}
    for io in [*config.input, *config.output]:
        t = tensors[io.name].type.tensor_type
        assert ONNX_TYPES[t.elem_type] == model_config_pb2.DataType.Name(io.data_type)
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
        assert dims[0] == -1, "batch axis must be dynamic"
        assert dims[1:] == list(io.dims), io.name
    assert {io.name for io in [*config.input, *config.output]} == set(tensors)


def test_step_onnx_equals_torch_and_carries_the_vocabulary(model):
    vocabulary = json.loads(step_config().parameters["vocabulary"].string_value)
    topics = topic_model.load()
    assert vocabulary == topics.vocabulary
    about = json.loads(step_config().parameters["about"].string_value)
    served = ServedStep(Step(model, about["temperatures"]),
                        topic_model.fold_in(topics, 5)).eval()
    rng = np.random.default_rng(0)
    bow = BagOfWords(vocabulary)  # real conversations' counts, as the worker sends them
    earlier = bow.dense(["I need a cheap hotel in the north with free parking for 3 nights.",
                         "Book a train from Cambridge to London on Tuesday, arriving by 10.",
                         "Can you find an italian restaurant in the centre for two people?",
                         "?"])
    feed = {"embedding": rng.standard_normal((4, 384)).astype(np.float32) * 0.3,
            "is_customer": np.array([[1], [0], [1], [0]], np.float32),
            "turn_bow": bow.dense(["The guesthouse should have wifi.", "How long is the trip?",
                                   "Moderate price range please.", "!"]),
            "h": rng.uniform(-1, 1, (4, model.cfg.hidden)).astype(np.float32),
            "bow": earlier}
    assert feed["bow"][3].sum() == 0  # a conversation with no topic words yet
    sess = ort.InferenceSession(str(MODEL_REPOSITORY / "step/1/model.onnx"))
    names = [o.name for o in sess.get_outputs()]
    got = dict(zip(names, sess.run(names, feed), strict=True))
    with torch.no_grad():
        want = served(*(torch.from_numpy(feed[k]) for k in feed))
    for name, w in zip(names, want, strict=True):
        if name == "topic_words":  # float order may swap a near-tie at the 5th place
            for a, b in zip(got[name][:3], w.numpy()[:3], strict=True):
                assert len(set(a) & set(b)) >= 4 and a[0] == b[0]
        else:
            np.testing.assert_allclose(got[name], w.numpy(), atol=1e-5, err_msg=name)
    for head in ("probs", "satisfaction", "sentiment"):
        np.testing.assert_allclose(got[head].sum(1), 1.0, atol=1e-5)
    assert (got["topic_words"][3] == -1).all()  # no vocabulary word yet: no topic words
    np.testing.assert_array_equal(got["bow_out"], feed["bow"] + feed["turn_bow"])


def test_encoder_onnx_equals_the_fine_tuned_torch_encoder(model):
    tok = TurnTokenizer(default_tokenizer_path())
    texts = ["I want a refund now!", "ok", "Could you book a table for two at 7pm, please?"]
    sess = ort.InferenceSession(str(MODEL_REPOSITORY / "encoder/1/model.onnx"))
    for b in tok.buckets(texts, 8):
        (got,) = sess.run(["embedding"], {"input_ids": b.input_ids,
                                          "attention_mask": b.attention_mask})
        with torch.no_grad():
            want = model.encode(torch.from_numpy(b.input_ids),
                                torch.from_numpy(b.attention_mask)).numpy()
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_fine_tuning_runs_on_a_slice_and_trains_only_the_upper_layers(tmp_path):
    from training.finetune import ROWS, run
    from training.pack import build

    pack = build(goemotions_train=50)
    result = run(pack, ROWS["top2"], seed=0, device="cpu", epochs=1, limit=4,
                 save_dir=tmp_path)
    assert result["best_epoch"] == 1 and set(result["test"]) == {
        "uss", "meld", "semeval", "goemotions", "service"}
    assert 0 <= result["test"]["service"]["alarm_share"] <= 1
    assert 0 <= result["test"]["meld"]["sentiment"]["macro_f1"] <= 100
    from transformers import BertModel

    saved = torch.load(tmp_path / "top2-0.pt", weights_only=False)
    frozen = saved["config"]["frozen_layers"]
    layers = {int(k.split(".")[3]) for k in saved["state"] if k.startswith("bert.encoder.")}
    assert layers == set(range(frozen, 6))  # only the trained layers are kept
    assert not any(k.startswith("bert.embeddings.") for k in saved["state"])
    base = BertModel.from_pretrained(str(minilm_dir()), local_files_only=True).state_dict()
    key = f"encoder.layer.{frozen}.output.dense.weight"
    assert not torch.equal(saved["state"][f"bert.{key}"], base[key])  # and they did train
    assert {"gru.weight_ih_l0", "heads.satisfaction.weight"} <= set(saved["state"])


def test_step_rows_start_from_the_served_checkpoint_and_train_only_gru_and_heads(tmp_path):
    from training.finetune import ROWS, run
    from training.pack import build

    pack = build(goemotions_train=50, service_train=50)
    svc = pack["sets"]["service_train"]
    assert set(svc["sentiment"].tolist()) <= {0, 1} and (svc["satisfaction"] == -1).all()
    result = run(pack, ROWS["step_reviews"], seed=0, device="cpu", epochs=1, limit=4,
                 save_dir=tmp_path, init=TOP2)
    assert result["history"][0]["epoch"] == 0  # the init, measured before any step
    assert 0 <= result["history"][1]["service_valid"]["alarm_share"] <= 1
    assert "complaints_valid_alarmed" in result["history"][1]  # None: no negative in a slice
    init = torch.load(TOP2, weights_only=False)["state"]
    saved = torch.load(tmp_path / "step_reviews-0.pt", weights_only=False)
    assert saved["config"]["frozen_layers"] == 4  # the served encoder layers travel along
    for k, v in init.items():
        same = torch.equal(saved["state"][k].float(), v.float())
        assert same == k.startswith("bert."), k  # encoder kept, GRU and heads trained


def test_emotion_and_aspect_heads_were_trained_on_the_served_encoders_token_states():
    from training.model import encoder_digest

    served = encoder_digest(CHECKPOINT)
    emotions = torch.load(ROOT / "training/checkpoints/emotions.pt", weights_only=False)
    aspects = torch.load(ROOT / "training/checkpoints/aspects.pt", weights_only=False)
    assert emotions["about"]["encoder"] == aspects["encoder"] == served
    assert served != encoder_digest(TOP2)  # the served encoder is not the step rows' start


def test_service_requests_are_neutral_held_out_and_complaints_are_negative():
    from training import service

    rows = {s: service.load(s) for s in service.SPLITS}
    assert min(len(r) for r in rows.values()) > 2000
    for t, label in (r for rs in rows.values() for r in rs):
        assert label == ("negative" if service.EXPLICIT.search(t) else "neutral"), t
    assert sum(label == "negative" for _, label in rows["train"]) < 0.01 * len(rows["train"])
    train, test = {t for t, _ in rows["train"]}, {t for t, _ in rows["test"]}
    assert len(train & test) < 0.01 * len(test)


def test_written_turns_are_split_per_domain_and_kind_and_kept_off_the_check_set():
    from training import service

    every = [json.loads(line) for line in service.WRITTEN.read_text().splitlines()]
    assert len({r["text"] for r in every}) == len(every) > 1800
    hard = [r for r in every if r["split"] == "train_hard"]  # the second batch: train only
    rows = [r for r in every if r["split"] != "train_hard"]
    assert len(hard) > 700 and len({r["domain"] for r in rows}) == 12
    for key in {(r["domain"], r["kind"]) for r in rows}:
        group = [r for r in rows if (r["domain"], r["kind"]) == key]
        valid = sum(r["split"] == "valid" for r in group)
        assert valid == round(0.2 * len(group)), key
    again = service.split_written([{k: v for k, v in r.items() if k != "split"} for r in rows])
    assert {r["text"]: r["split"] for r in again} == {r["text"]: r["split"] for r in rows}
    check = [i["text"].lower() for i in json.loads(service.CHECK_SET.read_text())["items"]]
    assert not any(service.near_check_set(r["text"], check) for r in every[::7])
    held = check + [r["text"].lower() for r in rows if r["split"] == "valid"]
    assert not any(service.near_check_set(r["text"], held) for r in hard[::7])
    labels = dict(service.load_written("train") + service.load_written("valid")
                  + service.load_written("train_hard"))
    assert {labels[r["text"]] for r in every if r["kind"] == "complaint"} == {"negative"}
    assert {labels[r["text"]] for r in every if r["kind"] == "praise"} == {"positive"}


def test_temperature_scaling_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    true = rng.standard_normal((4000, 3)) * 3
    y = np.array([rng.choice(3, p=p) for p in softmax(true)])
    overconfident = true * 2.5
    t = fit_temperature(overconfident, y)
    assert 2.2 < t < 2.8
    assert ece(softmax(overconfident / t), y) < ece(softmax(overconfident), y)


def test_alert_rule_holds_the_precisions_lower_bound_not_its_point_estimate():
    from training.evaluate import precision_lower_bound

    def wilson(k: int, n: int, z: float = 1.6448536) -> float:  # one-sided 95 %, by hand
        p = k / n
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        return (p + z * z / (2 * n) - half) / (1 + z * z / n)

    assert precision_lower_bound(168, 273) == pytest.approx(wilson(168, 273), abs=1e-6)
    assert precision_lower_bound(168, 273) < 0.6 < 168 / 273  # valid 0.615 does not pass
    assert precision_lower_bound(1340, 2000) > 0.65  # the same evidence, more of it, does
    assert precision_lower_bound(0, 0) == 0.0


def test_thresholds_hold_precision_at_the_design_share_of_dissatisfied_turns():
    from training.data import Dialogue, Utterance
    from training.evaluate import choose_thresholds

    at = {-0.95: [0.95, 0.05, 0.0], -0.5: [0.5, 0.5, 0.0], 0.5: [0.0, 0.5, 0.5]}
    # half the turns dissatisfied: 150 at score -0.95 and 50 at -0.5; of the others, 10 at
    # -0.95, 80 at -0.5 and 110 at +0.5
    cells = [((1, 1, 1), -0.95)] * 150 + [((1, 1, 1), -0.5)] * 50 + [((3, 3, 3), -0.95)] * 10 \
        + [((3, 3, 3), -0.5)] * 80 + [((3, 3, 3), 0.5)] * 110
    dialogues = [Dialogue(f"d{i}", (Utterance("customer", "x", scores),))
                 for i, (scores, _) in enumerate(cells)]
    outs = [{"satisfaction": np.array([at[score]]), "sentiment": np.array([[0.0, 1.0, 0.0]])}
            for _, score in cells]
    valid = {"A": (dialogues, outs)}
    # at the validation share (0.5), level -0.5 catches every dissatisfied turn at precision 0.69
    best, _ = choose_thresholds(valid, design_prevalence=0.5)
    assert best["level_threshold"] == -0.5 and best["recall"] == 1.0
    # with a fifth of the turns dissatisfied, -0.5 would be right a third of the time: -0.9 holds
    best, grid = choose_thresholds(valid, design_prevalence=0.2)
    assert best["level_threshold"] == -0.9 and best["recall"] == 0.75
    assert best["precision_at_design"] == pytest.approx(60 / (60 + 16), abs=1e-4)
    assert all(g["precision_lower"] < 0.6 for g in grid if g["recall"] == 1.0)


def test_sentiment_rule_is_chosen_for_complaints_unless_either_set_of_requests_would_alert():
    from training.data import Dialogue, Utterance
    from training.evaluate import SingleTurns, choose_thresholds

    # USS: polite customers (sentiment neutral), every dissatisfied one at score -0.5
    cells = [((1, 1, 1), [0.5, 0.5, 0.0])] * 100 + [((3, 3, 3), [0.0, 0.5, 0.5])] * 100
    dialogues = [Dialogue(f"d{i}", (Utterance("customer", "x", scores),))
                 for i, (scores, _) in enumerate(cells)]
    outs = [{"satisfaction": np.array([p]), "sentiment": np.array([[0.0, 1.0, 0.0]])}
            for _, p in cells]
    valid = {"A": (dialogues, outs)}

    def turns(sentiment: list[float]) -> SingleTurns:
        return SingleTurns(np.array(sentiment), np.array(sentiment))

    complaints = turns([-0.3] * 50)  # plain complaints: mildly negative, never as low as -0.5
    requests = turns([-0.1] * 90 + [0.2] * 10)
    quiet = turns([0.1] * 100)
    sets = {"requests": requests, "written_requests": quiet, "complaints": complaints}
    best, grid = choose_thresholds(valid, 0.5, sets)
    assert (best["level_threshold"], best["sentiment_threshold"]) == (-0.5, -0.3)
    assert best["complaints_alerted"] == 1.0 and best["requests_alerted"] == 0.0
    assert any(g["sentiment_threshold"] == -0.1 and g["requests_alerted"] == 0.9 for g in grid)
    # when a tenth of either set of requests reads as negative as the complaints, it stays off
    loud = turns([-0.35] * 10 + [0.2] * 90)
    for capped in ({**sets, "requests": loud}, {**sets, "written_requests": loud}):
        best, _ = choose_thresholds(valid, 0.5, capped)
        assert best["sentiment_threshold"] == -2.0 and best["complaints_alerted"] == 0.0
        assert best["level_threshold"] == -0.5 and best["recall"] == 1.0


def test_check_set_is_a_balanced_hand_written_set():
    items = json.loads((ROOT / "training/check_set.json").read_text())["items"]
    assert len(items) >= 150 and len({i["id"] for i in items}) == len(items)
    kinds = {k: sum(i["kind"] == k for i in items) for k in ("complaint", "neutral", "praise")}
    assert min(kinds.values()) >= 30
    assert {i["domain"] for i in items} == {"e-commerce", "telecom", "travel", "banking",
                                            "utilities"}
