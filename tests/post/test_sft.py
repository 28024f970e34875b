"""`llm sft`: the loss is on response tokens only (prompt/response and chat messages), packing keeps every
trained token, a run writes a model directory with its chat template, and bad lines are named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llm.configs import compose_config
from llm.data.chat import DEFAULT_TEMPLATE, load_chat_template
from llm.data.sft import SFTDataError, SFTDataModule, encode_example, pack, rows, segments
from llm.export import load_model_dir
from llm.objectives import IGNORE_INDEX
from llm.run.recipes import sft
from llm.run.runner import run
from llm.tokenizer import ByteTokenizer
from tests.post.conftest import post_overrides

BYTES = ByteTokenizer()


def test_prompt_tokens_are_not_targets_and_response_tokens_are() -> None:
    example = encode_example(segments({"prompt": "ab", "response": "cd"}, "x", DEFAULT_TEMPLATE), BYTES, 16, "x")
    inputs, targets = rows([example])
    # ids: a b c d <eot>; inputs drop the last, targets are the next token where it is a response token
    assert inputs[0].tolist() == list(b"abcd")
    assert targets[0].tolist() == [IGNORE_INDEX, ord("c"), ord("d"), BYTES.eot_id]


def test_chat_messages_train_the_assistant_turns_only() -> None:
    record = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    example = encode_example(segments(record, "x", DEFAULT_TEMPLATE), BYTES, 64, "x")
    text = bytes(example.ids[:-1].tolist()).decode()
    assert text == "User: hi\nAssistant: yo\n"
    trained = bytes(i for i, t in zip(example.ids[:-1].tolist(), example.trained[:-1].tolist(), strict=True) if t)
    assert trained == b"yo\n" and example.trained[-1]  # and end-of-text


def test_padding_rows_and_packing_keep_every_trained_token() -> None:
    examples = [encode_example([("p" * n, False), ("r" * (n + 1), True)], BYTES, 32, "x") for n in (1, 3, 5)]
    _, padded = rows(examples)
    packed = pack(examples, 8)
    _, packed_targets = rows(packed)
    assert (padded != IGNORE_INDEX).sum() == (packed_targets != IGNORE_INDEX).sum() == 2 + 4 + 6 + 3
    assert all(len(w.ids) <= 9 for w in packed)


def test_a_bad_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "a", "response": "b"}\n{"question": "a"}\n')
    data = SFTDataModule(path, BYTES, 16, DEFAULT_TEMPLATE, val_fraction=0.5)
    with pytest.raises(SFTDataError, match=r"bad.jsonl line 2: each line must be .*got keys \['question'\]"):
        data.setup()


def test_sft_writes_a_model_directory_with_its_chat_template(workdir: Path, base_model: Path, sft_file: Path) -> None:
    cfg = compose_config("sft", [*post_overrides(workdir, base_model, sft_file, "sft", steps=8), "data.packing=true"])
    summary = run(cfg, sft)
    assert summary["steps"] == 8 and summary["val_loss"] > 0
    model, tokenizer = load_model_dir(workdir / "sft" / "model")
    assert tokenizer.to_dict() == load_model_dir(base_model)[1].to_dict()
    assert load_chat_template(workdir / "sft" / "model") == DEFAULT_TEMPLATE
    assert json.loads((workdir / "sft" / "run_info.json").read_text())["base_model"] == str(base_model.resolve())


def test_an_sft_run_resumes_exactly(workdir: Path, base_model: Path, sft_file: Path) -> None:
    from tests.post.test_dpo import series

    def sft_run(name: str, *extra: str) -> None:
        run(compose_config("sft", [*post_overrides(workdir, base_model, sft_file, name, steps=8), *extra]), sft)

    sft_run("sft-full")
    stop = ["+callbacks.stop._target_=tests.helpers.StopAtStep", "+callbacks.stop.step=3"]
    sft_run("sft-resumed", *stop)
    sft_run("sft-resumed", "ckpt_path=last")
    expected, got = series(workdir / "sft-full", "train/loss"), series(workdir / "sft-resumed", "train/loss")
    assert sorted(got) == sorted(expected) == list(range(8))
    for step in expected:
        assert got[step] == pytest.approx(expected[step], rel=1e-5), step
