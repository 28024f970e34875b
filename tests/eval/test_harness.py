"""The lm-evaluation-harness adapter: exact scores against direct computations, left truncation, generation with
stops, and local multiple-choice tasks run through lm_eval's own evaluator (offline, data made here)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("lm_eval")

from lm_eval import simple_evaluate  # noqa: E402
from lm_eval.api.instance import Instance  # noqa: E402
from lm_eval.api.registry import get_model  # noqa: E402
from lm_eval.tasks import TaskManager  # noqa: E402
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window  # noqa: E402

from llm.eval.harness import HarnessError, LLMHarnessModel, run_lm_eval  # noqa: E402
from llm.export import ModelDirError, save_model_dir  # noqa: E402
from llm.infer.generate import GenerationSettings, generate_batch  # noqa: E402
from llm.model import GPT, ModelConfig, build_gpt  # noqa: E402
from llm.tokenizer import CharTokenizer, train_tokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ALPHABET = "\nabcdefghijklmnopqrstuvwxyz =?.!"
BLOCK = 16


def tiny_gpt(vocab_size: int, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return build_gpt(ModelConfig(vocab_size=vocab_size, block_size=BLOCK, n_layer=2, n_head=2, n_embd=32)).eval()


@pytest.fixture(scope="module")
def random_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny model with a char tokenizer (no end-of-text token: the start token is a newline)."""
    tokenizer = CharTokenizer(sorted(ALPHABET))
    return save_model_dir(tmp_path_factory.mktemp("random") / "model", tiny_gpt(tokenizer.vocab_size), tokenizer)


@pytest.fixture(scope="module")
def lm(random_dir: Path) -> LLMHarnessModel:
    return LLMHarnessModel(path=str(random_dir), batch_size=3, device="cpu")


def request(kind: str, *args: object) -> Instance:
    return Instance(request_type=kind, doc={}, arguments=tuple(args), idx=0, metadata=("t", 0, 1))  # type: ignore[arg-type]


def direct_logp(lm: LLMHarnessModel, context_ids: list[int], continuation_ids: list[int]) -> float:
    """The sum of log_softmax at the continuation's tokens, one plain forward over context + continuation."""
    ids = torch.tensor([context_ids + continuation_ids])
    with torch.no_grad():
        logp = torch.log_softmax(lm.model(ids[:, :-1]).float(), dim=-1)[0]
    at = range(len(context_ids) - 1, ids.size(1) - 1)
    return sum(float(logp[t, ids[0, t + 1]]) for t in at)


def test_loglikelihood_is_the_sum_of_the_continuation_token_log_probs(lm: LLMHarnessModel) -> None:
    pairs = [("the cat", " sat."), ("a", "b"), ("is it? ", "yes"), ("", "hello"), ("x=", "")]
    results = lm.loglikelihood([request("loglikelihood", c, x) for c, x in pairs])
    encode = lm.tokenizer.encode
    expected = [
        direct_logp(lm, encode("the cat"), encode(" sat.")),
        direct_logp(lm, encode("a"), encode("b")),
        direct_logp(lm, encode("is it?"), encode(" yes")),  # the context's trailing space joins the continuation
        direct_logp(lm, encode("\n"), encode("hello")),  # an empty context conditions on the start token
        0.0,
    ]
    for (got, _), want in zip(results, expected, strict=True):
        assert got == pytest.approx(want, abs=1e-5)


def test_is_greedy_is_true_exactly_for_the_greedy_continuation(lm: LLMHarnessModel) -> None:
    prompt = lm.tokenizer.encode("the dog")
    greedy = generate_batch(lm.model, [prompt], GenerationSettings(max_new_tokens=4, temperature=0.0))[0]
    text = lm.tokenizer.decode(greedy)
    other = "".join("a" if ch != "a" else "b" for ch in text[:1]) + text[1:]
    (_, best), (_, worse) = lm.loglikelihood([request("loglikelihood", "the dog", s) for s in (text, other)])
    assert best and not worse


def test_loglikelihood_rolling_is_the_whole_sequence_loss(lm: LLMHarnessModel) -> None:
    text = "the cat sat."  # fits in one window: every token given its whole prefix, the first the start token
    ids = lm.tokenizer.encode("\n" + text)
    with torch.no_grad():
        logits = lm.model(torch.tensor([ids[:-1]]))
        loss = torch.nn.functional.cross_entropy(logits[0], torch.tensor(ids[1:]), reduction="sum")
    (got,) = lm.loglikelihood_rolling([request("loglikelihood_rolling", text)])
    assert got == pytest.approx(-float(loss), abs=1e-4)


def test_loglikelihood_rolling_of_a_long_text_matches_the_harness_windows(lm: LLMHarnessModel) -> None:
    """Longer than the context: scored as lm_eval's own rolling windows score it, each token exactly once."""
    text = "the quick brown fox jumps over the lazy dog and runs away."
    ids = lm.tokenizer.encode(text)
    start = lm.tokenizer.encode("\n")[0]
    want = 0.0
    for window in get_rolling_token_windows(ids, start, BLOCK, 1):
        context, scored = make_disjoint_window(window)
        want += direct_logp(lm, context, scored)
    before = lm.counts["loglikelihood_rolling_windowed"]
    (got,) = lm.loglikelihood_rolling([request("loglikelihood_rolling", text)])
    assert got == pytest.approx(want, abs=1e-4)
    assert lm.counts["loglikelihood_rolling_windowed"] == before + 1


def test_long_requests_are_truncated_from_the_left_and_counted(lm: LLMHarnessModel) -> None:
    context = "a long context that is far longer than sixteen characters ="
    continuation = "yes"
    tokens = lm.tokenizer.encode(context + continuation)[-(BLOCK + 1) :]  # the last block_size + 1 tokens
    want = direct_logp(lm, tokens[: -len(continuation)], tokens[-len(continuation) :])
    before = lm.counts["loglikelihood_truncated"]
    short = lm.loglikelihood([request("loglikelihood", "short", "yes")])
    assert lm.counts["loglikelihood_truncated"] == before
    ((got, _),) = lm.loglikelihood([request("loglikelihood", context, continuation)])
    assert got == pytest.approx(want, abs=1e-5)
    assert lm.counts["loglikelihood_truncated"] == before + 1
    assert short[0][0] != got

    generated = lm.counts["generate_until_truncated"]
    (text,) = lm.generate_until([request("generate_until", context, {"max_gen_toks": 3, "until": []})])
    cropped = lm.tokenizer.encode(context)[-BLOCK:]
    greedy = generate_batch(lm.model, [cropped], GenerationSettings(max_new_tokens=3, temperature=0.0))[0]
    assert text == lm.tokenizer.decode(greedy)
    assert lm.counts["generate_until_truncated"] == generated + 1
    assert lm.truncated == lm.counts["loglikelihood_truncated"] + lm.counts["generate_until_truncated"]


def test_generate_until_respects_stop_sequences_and_max_gen_toks(lm: LLMHarnessModel) -> None:
    greedy = generate_batch(lm.model, [lm.tokenizer.encode("the")], GenerationSettings(12, temperature=0.0))[0]
    full = lm.tokenizer.decode(greedy)
    stop = full[5:7]  # a stop string that the greedy text meets
    cut = full[: full.index(stop)]
    gen = [
        ("the", {"until": [stop], "max_gen_toks": 12}),
        ("the", {"until": stop, "max_gen_toks": 12, "do_sample": False}),  # until may be a bare string
        ("the", {"until": ["never met"], "max_gen_toks": 12}),
        ("the", {"until": [], "max_gen_toks": 4}),
        ("", {"until": [], "max_gen_toks": 2}),  # an empty context starts from the start token
    ]
    out = lm.generate_until([request("generate_until", c, k) for c, k in gen])
    assert out[:4] == [cut, cut, full, full[:4]]
    assert len(lm.tokenizer.encode(out[4])) == 2


def test_sampled_generation_is_seeded(random_dir: Path) -> None:
    kwargs = {"until": [], "max_gen_toks": 8, "do_sample": True, "temperature": 1.0}
    runs = [
        LLMHarnessModel(path=str(random_dir), seed=seed).generate_until([request("generate_until", "a", kwargs)])
        for seed in (1, 1, 2)
    ]
    assert runs[0] == runs[1] != runs[2]


# --- local tasks through lm_eval's evaluator ---------------------------------------------------------------------

ANSWERS = ["cat", "dog", "owl"]


def quiz(seed: int = 0, count: int = 24) -> dict[str, int]:
    """`count` two-letter questions, each with the index of its answer."""
    rng = random.Random(seed)
    codes: set[str] = set()
    while len(codes) < count:
        codes.add("".join(rng.choice("abcdefgh") for _ in range(2)))
    return {code: rng.randrange(len(ANSWERS)) for code in sorted(codes)}


def answers_right(model: GPT, tokenizer: CharTokenizer, truth: dict[str, int]) -> bool:
    """Whether every question's true answer has the highest log-probability of the three (as the task scores it)."""
    rows = torch.tensor([tokenizer.encode(f"{code}= {answer}") for code in truth for answer in ANSWERS])
    with torch.no_grad():
        logp = torch.log_softmax(model(rows[:, :-1]), dim=-1).gather(-1, rows[:, 1:, None])[:, 3:, 0].sum(-1)
    return bool((logp.view(len(truth), len(ANSWERS)).argmax(-1) == torch.tensor(list(truth.values()))).all())


def memorise(truth: dict[str, int]) -> tuple[GPT, CharTokenizer]:
    """A tiny GPT trained (plain AdamW, full batch) until it prefers every question's answer."""
    lines = [f"{code}= {ANSWERS[i]}\n" for code, i in truth.items()]
    tokenizer = train_tokenizer("char", ["".join(lines) + "\n"])
    assert isinstance(tokenizer, CharTokenizer)
    model = tiny_gpt(tokenizer.vocab_size)
    ids = torch.tensor([tokenizer.encode(line) for line in lines])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for step in range(1, 501):
        logits = model(ids[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), ids[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 25 == 0 and answers_right(model, tokenizer, truth):
            break
    assert answers_right(model, tokenizer, truth), "the tiny model did not memorise the quiz"
    return model, tokenizer


def write_task(folder: Path, name: str, data: Path, cache: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yaml").write_text(
        f"task: {name}\n"
        "dataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {data}\n  cache_dir: {cache}\n"
        "test_split: test\n"
        "output_type: multiple_choice\n"
        'doc_to_text: "{{question}}="\n'
        'doc_to_choice: "{{choices}}"\n'
        "doc_to_target: label\n"
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
    )


def write_docs(path: Path, truth: dict[str, int], labels: list[int]) -> Path:
    docs = [{"question": code, "choices": ANSWERS, "label": label} for code, label in zip(truth, labels, strict=True)]
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return path


@pytest.fixture(scope="module")
def quiz_setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A memorised model and two local tasks on its questions: the true labels, and the labels shuffled."""
    root = tmp_path_factory.mktemp("quiz")
    truth = quiz()
    model, tokenizer = memorise(truth)
    model_dir = save_model_dir(root / "model", model, tokenizer)
    true_labels = list(truth.values())
    shuffled = true_labels[:]
    random.Random(7).shuffle(shuffled)
    tasks = root / "tasks"
    write_task(tasks, "quiz_true", write_docs(root / "true.jsonl", truth, true_labels), root / "hf-cache")
    write_task(tasks, "quiz_shuffled", write_docs(root / "shuffled.jsonl", truth, shuffled), root / "hf-cache")
    agree = sum(a == b for a, b in zip(true_labels, shuffled, strict=True)) / len(truth)
    return {"model_dir": model_dir, "tasks": tasks, "agree": agree, "root": root}


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_memorised_task_scores_1_and_shuffled_labels_score_about_chance(quiz_setup: dict) -> None:
    lm = LLMHarnessModel(path=str(quiz_setup["model_dir"]), batch_size=8)
    manager = TaskManager(include_path=str(quiz_setup["tasks"]), include_defaults=False)
    results = simple_evaluate(
        model=lm, tasks=["quiz_true", "quiz_shuffled"], task_manager=manager, log_samples=False, bootstrap_iters=0
    )
    assert results is not None
    assert results["results"]["quiz_true"]["acc,none"] == 1.0
    # the model still picks the memorised answer, so it is right exactly where a shuffled label is the true one
    assert results["results"]["quiz_shuffled"]["acc,none"] == pytest.approx(quiz_setup["agree"])
    assert 0.1 <= quiz_setup["agree"] <= 0.6  # about chance (1/3) for 24 questions


def test_run_lm_eval_by_registered_name_returns_scores_and_counts(quiz_setup: dict) -> None:
    assert get_model("llm") is LLMHarnessModel
    out = run_lm_eval(quiz_setup["model_dir"], "quiz_true", include_path=quiz_setup["tasks"], limit=6)
    assert out["tasks"]["quiz_true"]["acc"] == 1.0
    assert out["tasks"]["quiz_true"]["samples"] == 6
    assert out["counts"] == {"loglikelihood": 6 * len(ANSWERS)}
    assert out["truncated"] == 0


def test_a_task_whose_data_file_is_missing_names_the_task_and_the_file(quiz_setup: dict, tmp_path: Path) -> None:
    write_task(tmp_path / "tasks", "quiz_lost", tmp_path / "nowhere.jsonl", tmp_path / "cache")
    with pytest.raises(HarnessError, match=r"task quiz_lost .* reads data file .*nowhere\.jsonl, which does not exist"):
        run_lm_eval(quiz_setup["model_dir"], ["quiz_lost"], include_path=tmp_path / "tasks")


def test_a_missing_include_path_is_named(quiz_setup: dict, tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="does not exist"):
        run_lm_eval(quiz_setup["model_dir"], ["quiz_true"], include_path=tmp_path / "nope")


def test_a_model_directory_without_a_tokenizer_is_refused(random_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "model"
    broken.mkdir()
    for name in ("model.safetensors", "config.json"):
        (broken / name).write_bytes((random_dir / name).read_bytes())
    with pytest.raises(ModelDirError, match="lacks tokenizer.json"):
        run_lm_eval(broken, ["quiz_true"])
    with pytest.raises(ModelDirError, match="lacks tokenizer.json"):
        simple_evaluate(model="llm", model_args=f"path={broken}", tasks=["quiz_true"], device="cpu")


@pytest.mark.slow  # lm_eval's CLI always indexes its thousands of built-in tasks: 20 s and more
def test_lm_eval_command_line_runs_our_model(quiz_setup: dict) -> None:
    """`llm-lm-eval --model llm --model_args path=DIR ...` (here as python -m) is lm_eval's own CLI."""
    out = quiz_setup["root"] / "cli"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_DATASETS_OFFLINE": "1"}
    args = [sys.executable, "-m", "llm.eval.lm_eval_cli", "--model", "llm", "--model_args"]
    args += [f"path={quiz_setup['model_dir']}", "--tasks", "quiz_true", "--include_path", str(quiz_setup["tasks"])]
    args += ["--device", "cpu", "--batch_size", "4", "--limit", "4", "--output_path", str(out)]
    done = subprocess.run(args, capture_output=True, text=True, env=env, cwd=quiz_setup["root"], timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(next(out.rglob("results_*.json")).read_text())
    assert results["results"]["quiz_true"]["acc,none"] == 1.0
