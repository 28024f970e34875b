"""The lm_eval and preference sections of `llm eval`, through the real command line: eval.json holds what
run_lm_eval, preference_eval and win_rate return when called directly; eval.md and the printed tables show them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from llm.eval.preference import preference_eval, win_rate
from tests.eval import test_preference_eval
from tests.eval.test_eval_cli import llm_eval
from tests.eval.test_preference_eval import PAIRS, write_pairs

biased = test_preference_eval.biased  # the fixture: a policy that always says "a", a reference that says "b"

CHECKER = "def score(prompt, completion):\n    return float(completion.startswith('a'))\n"


def read_results(out: Path) -> dict:
    return json.loads((out / "eval.json").read_text())


def test_a_local_lm_eval_task_is_scored_into_eval_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The quiz of tests/eval/test_harness.py (a memorised model, its true and shuffled labels), from a task
    folder whose name holds `,` and `=`."""
    pytest.importorskip("lm_eval")
    from llm.eval.harness import run_lm_eval
    from tests.eval.test_harness import ANSWERS, memorise, quiz, write_docs, write_task

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from llm.export import save_model_dir

    truth = quiz(count=12)
    model_dir = save_model_dir(tmp_path / "model", *memorise(truth))
    tasks = tmp_path / "my tasks, v=2"
    write_task(tasks, "quiz_true", write_docs(tmp_path / "true.jsonl", truth, list(truth.values())), tmp_path / "hf")
    args = [f"model={model_dir}", "text=none", "samples.prompts=[]", f"out={tmp_path / 'out'}"]
    args += ["lm_eval.tasks=[quiz_true]", f"lm_eval.include_path={tasks}", "lm_eval.limit=8", "lm_eval.batch_size=4"]

    code, out, err = llm_eval(capsys, monkeypatch, *args)

    assert code == 0, err
    section = read_results(tmp_path / "out")["lm_eval"]
    direct = run_lm_eval(model_dir, ["quiz_true"], include_path=tasks, limit=8, batch_size=4)
    assert section["tasks"]["quiz_true"]["acc"] == direct["tasks"]["quiz_true"]["acc"] == 1.0
    assert section["tasks"] == direct["tasks"] and section["counts"] == direct["counts"]
    assert section["counts"] == {"loglikelihood": 8 * len(ANSWERS)} and section["truncated"] == 0
    assert (section["include_path"], section["limit"], section["num_fewshot"]) == (str(tasks.resolve()), 8, None)
    markdown = (tmp_path / "out" / "eval.md").read_text()
    assert "## lm-evaluation-harness" in markdown
    assert "| quiz_true | acc | 1.0000 | 0.0000 | 8 |" in markdown
    assert "Requests: loglikelihood 24; cut from the left to fit the model's context: 0." in markdown
    assert "quiz_true" in out and "lm_eval" in out


def test_empty_tasks_leave_the_section_out_without_lm_eval(
    biased: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    args = [f"model={biased[0]}", "text=none", "samples.prompts=[]", f"out={tmp_path}", "preference.reference=null"]
    code, _, err = llm_eval(capsys, monkeypatch, *args)
    assert code == 0, err
    assert set(read_results(tmp_path)) == {"model"}


def test_preference_accuracy_margins_and_win_rate(
    biased: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A policy that always says "a" against a reference that always says "b"; the pairs file and the reward
    file have `,`, `=` and spaces in their names."""
    policy, reference = biased
    pairs = write_pairs(tmp_path / "held out, beta=0.5.jsonl", PAIRS)
    checker = tmp_path / "my checker.py"
    checker.write_text(CHECKER)
    args = [f"model={policy}", "text=none", "samples.prompts=[]", f"out={tmp_path / 'out'}"]
    args += [f"preference.reference={reference}", f"preference.pairs={pairs}", "preference.beta=0.5"]
    args += [f"preference.reward={checker}:score", "preference.max_new_tokens=3"]

    code, out, err = llm_eval(capsys, monkeypatch, *args)

    assert code == 0, err
    section = read_results(tmp_path / "out")["preference"]
    assert section["reference"] == str(reference.resolve())
    scores = preference_eval(policy, reference, pairs, beta=0.5)
    assert section["implicit_reward"] == {"pairs_file": str(pairs), **scores}
    prompts = [p["prompt"] for p in PAIRS]  # null preference.prompts: the prompts of the pairs
    wins = win_rate(policy, reference, prompts, f"{checker}:score", max_new_tokens=3, temperature=0.0, seed=0)
    assert section["win_rate"] == {"prompts_file": str(pairs), **wins}
    assert (wins["win_rate"], wins["wins"], wins["prompts"]) == (1.0, len(PAIRS), len(PAIRS))
    markdown = (tmp_path / "out" / "eval.md").read_text()
    assert f"| accuracy (chosen reward > rejected) | {scores['accuracy']:.4f} |" in markdown
    assert f"| mean margin (chosen - rejected) | {scores['margin']:.4f} |" in markdown
    assert "| win rate (a tie counts half) | 1.0000 |" in markdown
    assert "| cat= | aaa | bbb | 1 | 0 |" in markdown
    assert "win rate" in out and "accuracy" in out


def test_win_rate_alone_on_a_prompts_file(
    biased: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    policy, reference = biased
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("cat=\ndog=\n")
    checker = tmp_path / "checker.py"
    checker.write_text(CHECKER)
    args = [f"model={reference}", "text=none", "samples.prompts=[]", f"out={tmp_path / 'out'}"]
    args += [f"preference.reference={policy}", f"preference.reward={checker}:score", f"preference.prompts={prompts}"]
    args += ["preference.temperature=1.0", "preference.seed=3", "preference.max_new_tokens=2"]

    code, _, err = llm_eval(capsys, monkeypatch, *args)

    assert code == 0, err
    section = read_results(tmp_path / "out")["preference"]
    assert "implicit_reward" not in section
    assert (section["win_rate"]["prompts"], section["win_rate"]["losses"]) == (2, 2)
    assert section["win_rate"]["examples"][1]["policy"] == "bb"


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("lm_eval.tasks=quiz", "lm_eval.tasks=quiz must be a list of task names"),
        ("lm_eval.limit=0", "lm_eval.limit=0 must be a whole number >= 1"),
        ("preference.pairs=x.jsonl", "preference.pairs is set but preference.reference is null"),
        ("preference.beta=0", "preference.beta=0 must be a positive number"),
        ("preference.temperature=-1", "preference.temperature=-1 must be a number >= 0"),
        ("preference.prompts=p.txt", "preference.prompts is set but preference.reward is null"),
    ],
)
def test_a_bad_setting_is_one_line_before_any_work(
    biased: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    setting: str,
    message: str,
) -> None:
    policy, reference = biased
    pairs = write_pairs(tmp_path / "pairs.jsonl", PAIRS)
    (tmp_path / "p.txt").write_text("cat=\n")
    monkeypatch.chdir(tmp_path)
    with_reference = [f"preference.reference={reference}", f"preference.pairs={pairs}"]
    args = [f"model={policy}", "text=none", f"out={tmp_path / 'out'}", *with_reference, setting]
    if setting.startswith("preference.pairs"):
        args.remove(with_reference[0])
    code, _, err = llm_eval(capsys, monkeypatch, *args)
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "out").exists()


def test_nothing_to_compare_with_the_reference_is_refused(
    biased: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    other = Path(shutil.copytree(biased[1], tmp_path / "ref"))
    code, _, err = llm_eval(capsys, monkeypatch, f"model={biased[0]}", "text=none", f"preference.reference={other}")
    assert code == 2 and "is given but nothing to compare: give preference.pairs=FILE" in err, err
