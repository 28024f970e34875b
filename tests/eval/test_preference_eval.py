"""Preference evaluation: implicit-reward accuracy and margins against hand-computed log-probabilities, and the
win rate of a policy's generations over its reference's under a reward function written here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from llm.errors import ConfigError
from llm.eval.preference import preference_eval, win_rate
from llm.eval.rewards import RewardError, copies_word
from llm.export import save_model_dir
from llm.model import GPT, ModelConfig, build_gpt
from llm.tokenizer import CharTokenizer

ALPHABET = sorted("\nabcdefghijklmnopqrstuvwxyz =?!")
BLOCK = 16
PAIRS = [
    {"prompt": "cat=", "chosen": "cat\n", "rejected": "cat!\n"},
    {"prompt": "is it?", "chosen": " yes", "rejected": " no"},
    {"prompt": "dog=", "chosen": "dog\n", "rejected": "dig\n"},
    {"prompt": "a very long prompt=", "chosen": "ok", "rejected": "no"},  # the prompt keeps its last 8 tokens
]


def tiny_gpt(seed: int) -> GPT:
    torch.manual_seed(seed)
    config = ModelConfig(vocab_size=len(ALPHABET), block_size=BLOCK, n_layer=2, n_head=2, n_embd=32, tie_weights=False)
    return build_gpt(config).eval()


def always(model: GPT, char: str) -> GPT:
    """The model made to put almost all probability on `char` whatever the input: the final norm outputs a
    constant vector and the head scores only `char` against it."""
    with torch.no_grad():
        model.final_norm.weight.zero_()
        model.final_norm.bias.fill_(1.0)
        model.head.weight.zero_()
        model.head.weight[ALPHABET.index(char)] = 1.0
    return model


def sequence_logp(model: GPT, tokenizer: CharTokenizer, prompt: str, response: str) -> float:
    """log p(response | prompt), the prompt cut to its last block_size // 2 tokens as training cuts it."""
    context = tokenizer.encode(prompt)[-(BLOCK // 2) :]
    ids = context + tokenizer.encode(response)
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids[:-1]])), dim=-1)[0]
    return sum(float(logp[t - 1, ids[t]]) for t in range(len(context), len(ids)))


@pytest.fixture
def models(tmp_path: Path) -> tuple[Path, Path, GPT, GPT, CharTokenizer]:
    tokenizer = CharTokenizer(ALPHABET)
    policy, reference = tiny_gpt(1), tiny_gpt(2)
    return (
        save_model_dir(tmp_path / "policy", policy, tokenizer),
        save_model_dir(tmp_path / "reference", reference, tokenizer),
        policy,
        reference,
        tokenizer,
    )


def write_pairs(path: Path, pairs: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    return path


def test_implicit_reward_accuracy_and_margins_match_a_hand_computation(models, tmp_path: Path) -> None:
    policy_dir, reference_dir, policy, reference, tokenizer = models
    beta = 0.5
    chosen, rejected = [], []
    for p in PAIRS:
        for out, key in ((chosen, "chosen"), (rejected, "rejected")):
            ours = sequence_logp(policy, tokenizer, p["prompt"], p[key])
            theirs = sequence_logp(reference, tokenizer, p["prompt"], p[key])
            out.append(beta * (ours - theirs))
    margins = [c - r for c, r in zip(chosen, rejected, strict=True)]

    got = preference_eval(
        policy_dir, reference_dir, write_pairs(tmp_path / "pairs.jsonl", PAIRS), beta=beta, batch_size=3
    )

    assert got["pairs"] == len(PAIRS)
    assert got["accuracy"] == pytest.approx(sum(m > 0 for m in margins) / len(PAIRS))
    assert got["margin"] == pytest.approx(sum(margins) / len(PAIRS), abs=1e-5)
    assert got["chosen_reward"] == pytest.approx(sum(chosen) / len(PAIRS), abs=1e-5)
    assert got["rejected_reward"] == pytest.approx(sum(rejected) / len(PAIRS), abs=1e-5)
    assert got["prompt_truncated"] == 1 and got["dropped"] == 0


def test_a_model_against_itself_has_zero_rewards(models, tmp_path: Path) -> None:
    policy_dir = models[0]
    got = preference_eval(policy_dir, policy_dir, write_pairs(tmp_path / "pairs.jsonl", PAIRS))
    assert got["accuracy"] == 0.0  # a tie is not a win for the chosen response
    assert got["margin"] == got["chosen_reward"] == got["rejected_reward"] == 0.0


def test_preference_eval_refuses_models_with_other_tokenizers(models, tmp_path: Path) -> None:
    other = save_model_dir(tmp_path / "other", tiny_gpt(3), CharTokenizer(list(reversed(ALPHABET))))
    with pytest.raises(ConfigError, match="different tokenizers"):
        preference_eval(models[0], other, write_pairs(tmp_path / "pairs.jsonl", PAIRS))


# --- win rate ----------------------------------------------------------------------------------------------------


def starts_with_a(prompt: str, completion: str) -> float:
    """The checker: 1 if the completion starts with "a"."""
    return float(completion.startswith("a"))


def fails_on_b(prompt: str, completion: str) -> float:
    if completion.startswith("b"):
        raise ValueError("no b please")
    return 0.0


def answers_text(prompt: str, completion: str) -> str:
    return completion


@pytest.fixture
def biased(tmp_path: Path) -> tuple[Path, Path]:
    """A policy that always says "a" and a reference that always says "b"."""
    tokenizer = CharTokenizer(ALPHABET)
    policy = save_model_dir(tmp_path / "policy_a", always(tiny_gpt(1), "a"), tokenizer)
    reference = save_model_dir(tmp_path / "reference_b", always(tiny_gpt(2), "b"), tokenizer)
    return policy, reference


def test_win_rate_with_a_checker_function(biased: tuple[Path, Path]) -> None:
    policy, reference = biased
    prompts = ["cat=", "dog=", "", "is it?"]
    got = win_rate(policy, reference, prompts, starts_with_a, max_new_tokens=3, temperature=0.0, seed=0)
    assert (got["wins"], got["ties"], got["losses"], got["win_rate"]) == (4, 0, 0, 1.0)
    assert got["policy_score"] == 1.0 and got["reference_score"] == 0.0
    assert got["examples"][0] == {
        "prompt": "cat=",
        "policy": "aaa",
        "reference": "bbb",
        "policy_score": 1.0,
        "reference_score": 0.0,
    }
    backwards = win_rate(reference, policy, prompts, starts_with_a, max_new_tokens=3, temperature=1.0, seed=3)
    assert backwards["win_rate"] == 0.0 and backwards["losses"] == 4


def test_win_rate_against_itself_is_all_ties_with_the_same_seed(models) -> None:
    policy_dir = models[0]
    got = win_rate(policy_dir, policy_dir, ["cat=", "dog="], starts_with_a, max_new_tokens=4, temperature=1.0, seed=5)
    assert (got["ties"], got["win_rate"]) == (2, 0.5)


def test_reward_function_by_name_from_a_module_and_from_a_file(biased, tmp_path: Path) -> None:
    policy, reference = biased
    by_module = win_rate(policy, reference, ["x"], "tests.eval.test_preference_eval:starts_with_a", max_new_tokens=2)
    checker = tmp_path / "my_checker.py"
    checker.write_text("def score(prompt, completion):\n    return len(completion) - completion.count('b')\n")
    by_file = win_rate(policy, reference, ["x"], f"{checker}:score", max_new_tokens=2)
    assert by_module["win_rate"] == by_file["win_rate"] == 1.0
    assert by_file["reward_fn"] == f"{checker}:score"


def test_prompts_from_a_pairs_file(biased, tmp_path: Path) -> None:
    pairs = write_pairs(tmp_path / "held_out.jsonl", PAIRS)
    got = win_rate(*biased, pairs, starts_with_a, max_new_tokens=2)
    assert got["prompts"] == len(PAIRS)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "no_such_module_xyz:score",
            r"reward function no_such_module_xyz:score: cannot import module no_such_module_xyz",
        ),
        ("tests.eval.test_preference_eval:nothing", r"test_preference_eval has no attribute 'nothing'"),
        ("tests.eval.test_preference_eval:ALPHABET", r"is a list, not a function"),
        ("score_it", r"names no function"),
        ("missing/file.py:score", r"missing/file.py is not a file"),
    ],
)
def test_a_reward_function_that_cannot_be_loaded_is_named(biased, spec: str, message: str) -> None:
    with pytest.raises(RewardError, match=message):
        win_rate(*biased, ["x"], spec, max_new_tokens=2)


def test_a_reward_function_that_raises_names_itself_and_the_input(biased) -> None:
    spec = "tests.eval.test_preference_eval:fails_on_b"
    with pytest.raises(
        RewardError, match=r"fails_on_b raised ValueError: no b please on prompt 'cat=' and completion 'bb'"
    ):
        win_rate(*biased, ["cat="], spec, max_new_tokens=2)


def test_a_reward_function_that_returns_no_number_is_named(biased) -> None:
    with pytest.raises(RewardError, match=r"answers_text returned 'aa' on prompt 'x'.* must return a finite number"):
        win_rate(*biased, ["x"], answers_text, max_new_tokens=2)


def test_a_file_whose_import_fails_is_named(biased, tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("import no_such_module_xyz\n")
    with pytest.raises(RewardError, match=r"broken.py:score: importing .*broken.py failed \(ModuleNotFoundError"):
        win_rate(*biased, ["x"], f"{broken}:score", max_new_tokens=2)


def test_the_dpo_demonstration_checker() -> None:
    assert copies_word("kqzf=", "kqzf\nabc") == 1.0
    assert copies_word("kqzf=", "kqzf!\n") == 0.0
    assert copies_word("kqzf=", "kqz") == 0.0
