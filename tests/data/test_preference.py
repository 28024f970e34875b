"""Preference pairs as training data: truncation, batches, log-probs of padded rows, the data module, fingerprints."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from llm.data.preference import (
    EncodedPair,
    EpochBatchSampler,
    PreferenceDataError,
    PreferenceDataModule,
    PreferencePair,
    collate_pairs,
    encode_pair,
)
from llm.errors import ConfigError
from llm.model import build_gpt
from llm.model.config import ModelConfig
from llm.objectives import IGNORE_INDEX, sequence_logprobs
from llm.tokenizer import CharTokenizer, TokenizerError, train_tokenizer
from tests.conftest import SHARED_DATA

HH_FILE = SHARED_DATA / "hh-rlhf-harmless-base-test.jsonl.gz"
CHARS = CharTokenizer(list(" 0123456789abcdefghijklmnopqrstuvwxyz"))
BYTES = train_tokenizer("byte", [])


def ids(text: str) -> list[int]:
    return CHARS.encode(text)


def as_lists(p: EncodedPair | None) -> tuple[list[int], list[int], list[int], int, int]:
    assert p is not None
    return p.prompt.tolist(), p.chosen.tolist(), p.rejected.tolist(), p.prompt_cut, p.response_cut


def test_prompt_cut_from_the_left_responses_from_the_right() -> None:
    """block_size 8: sequences of 9 tokens. Budget 3 keeps "fgh"; 9 − 3 = 6 tokens are left for each response."""
    pair = PreferencePair("abcdefgh", "123456789", "xy")
    assert as_lists(encode_pair(pair, CHARS, 8, 3)) == (ids("fgh"), ids("123456"), ids("xy"), 5, 3)
    # no budget: half the context, 4 tokens ("efgh"); 5 left for the responses
    assert as_lists(encode_pair(pair, CHARS, 8, None)) == (ids("efgh"), ids("12345"), ids("xy"), 4, 4)
    # a prompt under its budget leaves the responses the rest of the context
    short = PreferencePair("ab", "123456789", "x")
    assert as_lists(encode_pair(short, CHARS, 8, 4)) == (ids("ab"), ids("1234567"), ids("x"), 0, 2)
    # everything fits: nothing is cut
    assert as_lists(encode_pair(PreferencePair("a", "b", "c"), CHARS, 8)) == (ids("a"), ids("b"), ids("c"), 0, 0)


def test_a_response_with_no_room_drops_the_pair() -> None:
    """A budget past the context lets a 9-token prompt fill all block_size + 1 = 9 tokens: no response is left."""
    pair = PreferencePair("abcdefghij", "12", "3")
    assert encode_pair(pair, CHARS, 8, 9) is None
    assert encode_pair(pair, CHARS, 8, 100) is None
    assert as_lists(encode_pair(pair, CHARS, 8, 8)) == (ids("cdefghij"), ids("1"), ids("3"), 2, 1)


def test_responses_end_in_end_of_text_which_truncation_can_cut() -> None:
    """The byte tokenizer's end-of-text (256) closes each response and counts as one of its tokens."""
    pair = PreferencePair("hi", "ok", "no")
    assert as_lists(encode_pair(pair, BYTES, 4, 2)) == ([104, 105], [111, 107, 256], [110, 111, 256], 0, 0)
    assert as_lists(encode_pair(pair, BYTES, 3, 2)) == ([104, 105], [111, 107], [110, 111], 0, 2)


@pytest.mark.parametrize("budget", [0, -1, 1.5, True, "4"])
def test_bad_budget_and_block_size(budget: object) -> None:
    with pytest.raises(ConfigError, match=r"data\.prompt_budget must be a positive number of tokens, or null .*\(4\)"):
        encode_pair(PreferencePair("a", "b", "c"), CHARS, 8, budget)
    with pytest.raises(ConfigError, match=r"model\.block_size must be a positive integer, got 0"):
        encode_pair(PreferencePair("a", "b", "c"), CHARS, 0, None)


def test_a_char_tokenizer_meeting_an_unknown_character_says_to_pretrain_with_byte_or_bpe() -> None:
    with pytest.raises(TokenizerError, match=r"rejected response .*'!'.*pretrain with tokenizer=byte or tokenizer=bpe"):
        encode_pair(PreferencePair("abc", "ok", "no!"), CHARS, 8)


def encoded(prompt: list[int], chosen: list[int], rejected: list[int]) -> EncodedPair:
    return EncodedPair(*(np.asarray(x, dtype=np.int32) for x in (prompt, chosen, rejected)))


def test_collate_layout_padding_and_masking() -> None:
    """Pair 5: prompt 1 2, chosen 3 4 5, rejected 6. Pair 2: prompt 7, chosen 8, rejected 9 10.
    Rows: chosen of pair 5, chosen of pair 2, rejected of pair 5, rejected of pair 2; T = 5 − 1 = 4."""
    batch = collate_pairs([(5, encoded([1, 2], [3, 4, 5], [6])), (2, encoded([7], [8], [9, 10]))])
    assert set(batch) == {"input_ids", "targets", "index"}
    assert batch["input_ids"].dtype == batch["targets"].dtype == batch["index"].dtype == torch.long
    assert batch["input_ids"].tolist() == [[1, 2, 3, 4], [7, 0, 0, 0], [1, 2, 0, 0], [7, 9, 0, 0]]
    m = IGNORE_INDEX
    assert batch["targets"].tolist() == [[m, 3, 4, 5], [8, m, m, m], [m, 6, m, m], [9, 10, m, m]]
    assert batch["index"].tolist() == [5, 2]
    assert (batch["targets"] != IGNORE_INDEX).sum(-1).tolist() == [3, 1, 1, 2]  # the response lengths


def test_sequence_logprobs_of_a_padded_batch_equal_each_sequence_alone() -> None:
    """The summed response log-prob of each padded row equals Σ log p(response token) of its sequence run alone."""
    torch.manual_seed(0)
    model = build_gpt(ModelConfig(vocab_size=12, block_size=8, n_layer=1, n_head=2, n_embd=16)).eval()
    pairs = [encoded([1, 2], [3, 4, 5, 11], [6]), encoded([7], [8], [9, 10]), encoded([1, 2, 3, 4], [5], [6, 7, 8])]
    batch = collate_pairs(list(enumerate(pairs)))
    with torch.no_grad():
        logits = model(batch["input_ids"])
        got = sequence_logprobs(logits, batch["targets"], batch["targets"] != IGNORE_INDEX)
        rows = [(p.prompt, p.chosen) for p in pairs] + [(p.prompt, p.rejected) for p in pairs]
        for row, (prompt, response) in enumerate(rows):
            sequence = torch.tensor([*prompt.tolist(), *response.tolist()])
            logp = torch.log_softmax(model(sequence[None, :-1])[0], dim=-1)  # (L-1, V)
            alone = sum(logp[t, sequence[t + 1]] for t in range(len(prompt) - 1, len(sequence) - 1))
            assert got[row].item() == pytest.approx(float(alone), abs=1e-5)


def write_pairs(path: Path, n: int = 20, long_prompts: tuple[int, ...] = ()) -> Path:
    """n pairs with texts from the CHARS alphabet; pairs in long_prompts get a 30-character prompt."""
    records = []
    for i in range(n):
        prompt = ("p" * 30) if i in long_prompts else f"q{i}"
        records.append({"prompt": prompt, "chosen": f"yes {i}", "rejected": f"no {i} " + "x" * (i % 5)})
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def module(path: Path, **options: object) -> PreferenceDataModule:
    settings: dict = {"batch_size": 3, "val_fraction": 0.25, "seed": 7, **options}
    return PreferenceDataModule(path, settings.pop("tokenizer", CHARS), settings.pop("block_size", 16), **settings)


def prompt_of(p: EncodedPair) -> str:
    return CHARS.decode(p.prompt.tolist())


def test_split_is_seeded_in_file_order_and_sized(tmp_path: Path) -> None:
    path = write_pairs(tmp_path / "p.jsonl")
    dm = module(path)
    assert len(dm.train_pairs) == 15 and len(dm.val_pairs) == 5  # round(20 · 0.25)
    numbers = [int(prompt_of(p)[1:]) for p in dm.val_pairs]
    assert numbers == sorted(numbers)
    assert sorted(numbers + [int(prompt_of(p)[1:]) for p in dm.train_pairs]) == list(range(20))
    assert [prompt_of(p) for p in module(path).val_pairs] == [prompt_of(p) for p in dm.val_pairs]
    assert [prompt_of(p) for p in module(path, split_seed=8).val_pairs] != [prompt_of(p) for p in dm.val_pairs]
    # the run's seed orders training batches but keeps the split: every seed shares one reference cache
    assert [prompt_of(p) for p in module(path, seed=8).val_pairs] == [prompt_of(p) for p in dm.val_pairs]
    assert len(module(path, val_fraction=0.01).val_pairs) == 1  # at least one


def test_batches_index_their_split(tmp_path: Path) -> None:
    dm = module(write_pairs(tmp_path / "p.jsonl"))
    val = list(dm.val_dataloader())
    assert [b["index"].tolist() for b in val] == [[0, 1, 2], [3, 4]]
    batches = [(dm.val_pairs, b) for b in val] + [(dm.train_pairs, b) for b in dm.train_dataloader()]
    for pairs, batch in batches:
        for row, i in enumerate(batch["index"].tolist()):
            prompt = pairs[i].prompt.tolist()
            assert batch["input_ids"][row, : len(prompt)].tolist() == prompt
            assert (batch["targets"][row] != IGNORE_INDEX).sum() == len(pairs[i].chosen)
            assert (batch["targets"][row + len(batch["index"])] != IGNORE_INDEX).sum() == len(pairs[i].rejected)


def test_train_order_is_seeded_per_epoch_and_resumes(tmp_path: Path) -> None:
    """Each epoch is a new permutation of the 15 train pairs in 5 batches; the same seed gives the same order. With
    2 micro-batches a step an epoch takes 3 steps (2 + 2 + 1), so after global_step 4 the loader starts at batch
    5 + 2 = 7 of the uninterrupted run, runs to the end of that epoch, and then reads epoch 2 whole."""
    path = write_pairs(tmp_path / "p.jsonl")
    dm = module(path)
    loader = dm.train_dataloader()
    epochs = [[b["index"].tolist() for b in loader] for _ in range(3)]
    assert all(sorted(sum(e, [])) == list(range(15)) for e in epochs) and len(epochs[0]) == len(loader) == 5
    assert epochs[0] != epochs[1] != epochs[2]
    assert [b["index"].tolist() for b in module(path).train_dataloader()] == epochs[0]
    assert [b["index"].tolist() for b in module(path, seed=1).train_dataloader()] != epochs[0]
    resumed = module(path)
    resumed.trainer = SimpleNamespace(global_step=4, accumulate_grad_batches=2)
    again = resumed.train_dataloader()
    flat = sum(epochs, [])
    assert [b["index"].tolist() for b in again] == flat[7:10]
    assert [b["index"].tolist() for b in again] == flat[10:15]


def test_batches_before_step_counts_the_short_last_step_of_an_epoch() -> None:
    """5 batches an epoch, 2 a step: steps end after batches 2, 4, 5 | 7, 9, 10 | ...; 1 a step: batch k."""
    sampler = EpochBatchSampler(15, 3, seed=0)
    assert [sampler.batches_before_step(step, 2) for step in range(8)] == [0, 2, 4, 5, 7, 9, 10, 12]
    assert [sampler.batches_before_step(step, 1) for step in range(8)] == list(range(8))
    assert [sampler.batches_before_step(step, 5) for step in range(3)] == [0, 5, 10]


class RecordBatches(L.LightningModule):
    """Records the pair indices of every training batch; one parameter so that there is something to step."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[list[int]] = []

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        self.seen.append(batch["index"].tolist())
        return (self.weight**2).sum()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_a_resumed_lightning_run_reads_the_batches_of_an_uninterrupted_one(tmp_path: Path) -> None:
    """Lightning, 2 micro-batches a step, 5 batches an epoch: stopped after step 4 (mid-epoch 1) and resumed from
    its checkpoint to step 8, it trains on the same batches, in the same order, as one run to step 8."""
    path = write_pairs(tmp_path / "p.jsonl")

    def fit(steps: int, ckpt_path: str | None = None, checkpoints: Path | None = None) -> list[list[int]]:
        model = RecordBatches()
        callbacks = [ModelCheckpoint(dirpath=checkpoints, every_n_train_steps=steps)] if checkpoints else []
        trainer = L.Trainer(
            max_steps=steps,
            accumulate_grad_batches=2,
            limit_val_batches=0,
            accelerator="cpu",
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            enable_checkpointing=bool(checkpoints),
            callbacks=callbacks,
            default_root_dir=tmp_path,
        )
        trainer.fit(model, module(path), ckpt_path=ckpt_path)
        return model.seen

    whole = fit(8)
    assert len(whole) == 14  # epochs of 5 micro-batches in 3 steps: 5 + 5 + 2 · 2
    first = fit(4, checkpoints=tmp_path / "ckpt")
    (checkpoint,) = (tmp_path / "ckpt").glob("*.ckpt")
    assert first + fit(8, ckpt_path=str(checkpoint)) == whole


def test_epoch_batch_sampler_is_a_pure_function_of_the_batch_number() -> None:
    fresh = EpochBatchSampler(10, 4, seed=3)
    stream = [b for _ in range(4) for b in fresh]  # 4 epochs of 3 batches (4, 4, 2)
    assert [len(b) for b in stream[:3]] == [4, 4, 2]
    for start in (0, 2, 3, 7):
        sampler = EpochBatchSampler(10, 4, seed=3, start=start)
        got = [b for _ in range(2) for b in sampler]
        assert got == stream[start : start + len(got)]


def test_each_process_reads_its_slice_of_the_one_process_batch() -> None:
    """11 items, 2 processes of 2: global batches of 4 split 2 + 2, the last 3 split 2 + 1; one process with
    batches of 4 reads the same items in the same order."""
    alone = list(EpochBatchSampler(11, 4, seed=3))
    trainers = [SimpleNamespace(global_step=0, accumulate_grad_batches=1, global_rank=r, world_size=2) for r in (0, 1)]
    shares = [list(EpochBatchSampler(11, 2, seed=3).for_trainer(t)) for t in trainers]
    assert [len(b) for b in shares[0]] == [2, 2, 2] and [len(b) for b in shares[1]] == [2, 2, 1]
    assert [a + b for a, b in zip(*shares, strict=True)] == alone
    resumed = EpochBatchSampler(11, 2, seed=3).for_trainer(SimpleNamespace(**{**vars(trainers[1]), "global_step": 2}))
    assert list(resumed) == shares[1][2:]
    # 2 micro-batches a step: a data epoch of 3 global batches takes 2 steps, so step 2 starts the second epoch
    fresh = EpochBatchSampler(11, 2, seed=3, rank=1, world=2)
    stream = [b for _ in range(2) for b in fresh]  # each pass goes on with the next data epoch
    accumulated = SimpleNamespace(**{**vars(trainers[1]), "global_step": 2, "accumulate_grad_batches": 2})
    assert list(EpochBatchSampler(11, 2, seed=3).for_trainer(accumulated)) == stream[3:6]


def test_a_last_global_batch_smaller_than_the_processes_is_dropped() -> None:
    trainer = SimpleNamespace(global_step=0, accumulate_grad_batches=1, global_rank=2, world_size=3)
    assert [len(b) for b in EpochBatchSampler(7, 2, seed=0).for_trainer(trainer)] == [2]  # 6 + 1: the 1 is dropped
    with pytest.raises(ConfigError, match=r"too few training examples \(2\) to give each of the 3 processes one"):
        EpochBatchSampler(2, 2, seed=0).for_trainer(trainer)


def test_drops_are_counted_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Budget 17 with block_size 16 keeps 30-character prompts at 17 tokens: no room for a response, dropped."""
    path = write_pairs(tmp_path / "p.jsonl", long_prompts=(3, 11))
    with path.open("a") as f:
        f.write(json.dumps({"prompt": "q", "chosen": "same", "rejected": "same"}) + "\n")
    with caplog.at_level(logging.INFO):
        dm = module(path, prompt_budget=17)
        stats = dm.stats
    assert (stats.records, stats.identical, stats.empty_response, stats.kept) == (21, 1, 2, 18)
    assert len(dm.train_pairs) + len(dm.val_pairs) == 18
    assert "dropped 1 pairs whose chosen and rejected are the same and 2 whose prompt left no room" in caplog.text
    assert "21 records" in caplog.text
    # the two 30-character prompts cut to 10 leave 41 − 10 = 31 tokens (block_size 40) or 3 (block_size 12) for
    # responses of at most 10 characters: cut only in the second case, in those two pairs
    cut = module(path, prompt_budget=10, block_size=40).stats
    assert (cut.empty_response, cut.prompt_truncated, cut.response_truncated) == (0, 2, 0)
    cut = module(path, prompt_budget=10, block_size=12).stats
    assert (cut.empty_response, cut.prompt_truncated, cut.response_truncated) == (0, 2, 2)


def test_module_errors(tmp_path: Path) -> None:
    path = write_pairs(tmp_path / "p.jsonl")
    for options, message in [
        ({"val_fraction": 0}, r"data\.val_fraction must be a number between 0 and 1"),
        ({"val_fraction": 1.0}, r"data\.val_fraction must be"),
        ({"batch_size": 0}, r"data\.batch_size must be a positive integer, got 0"),
        ({"format": "csv"}, r"data\.format='csv' is not a preference data format"),
        ({"num_workers": -1}, r"data\.num_workers must be"),
        ({"seed": -1}, r"seed must be a non-negative integer, got -1"),
        ({"prompt_budget": 0}, r"data\.prompt_budget must be"),
    ]:
        with pytest.raises(ConfigError, match=message):
            module(path, **options)
    one = write_pairs(tmp_path / "one.jsonl", n=1)
    with pytest.raises(PreferenceDataError, match=r"one\.jsonl: pairs: 1 usable, too few .* data\.val_fraction"):
        module(one).setup()
    long = write_pairs(tmp_path / "long.jsonl", n=4, long_prompts=(0, 1, 2, 3))
    with pytest.raises(PreferenceDataError, match=r"no pair of the train split .* data\.prompt_budget \(now 20\)"):
        module(long, prompt_budget=20).setup()
    (tmp_path / "bang.jsonl").write_text(json.dumps({"prompt": "a", "chosen": "b!", "rejected": "c"}) + "\n")
    with pytest.raises(TokenizerError, match=r"bang\.jsonl, pair 1 .*'!'.* pretrain with tokenizer=byte or"):
        module(tmp_path / "bang.jsonl").setup()


def test_a_64_token_model_gets_nonempty_pairs_from_the_real_hh_data() -> None:
    """Byte tokenizer, context 64: every one of the 2,312 HH pairs keeps its last 32 prompt tokens and a response."""
    if not HH_FILE.is_file():
        pytest.skip(f"the HH test file is not at {HH_FILE} (it lives in ../shared/data beside the repository)")
    dm = PreferenceDataModule(HH_FILE, BYTES, 64, batch_size=4)
    pairs = dm.train_pairs + dm.val_pairs
    assert len(pairs) == 2312 and dm.stats.empty_response == 0 and dm.stats.kept == 2312
    assert all(len(p.prompt) <= 32 and len(p.chosen) >= 1 and len(p.rejected) >= 1 for p in pairs)
    assert all(len(p.prompt) + max(len(p.chosen), len(p.rejected)) <= 65 for p in pairs)
    assert all(BYTES.decode(p.prompt.tolist()).endswith("\n\nAssistant:") for p in pairs)
    batch = next(iter(dm.val_dataloader()))
    assert batch["input_ids"].shape[0] == 8 and batch["input_ids"].shape[1] <= 64
    torch.manual_seed(0)
    model = build_gpt(ModelConfig(vocab_size=257, block_size=64, n_layer=1, n_head=2, n_embd=16)).eval()
    with torch.no_grad():
        logps = sequence_logprobs(model(batch["input_ids"]), batch["targets"], batch["targets"] != IGNORE_INDEX)
    assert logps.shape == (8,) and bool(torch.isfinite(logps).all()) and bool((logps < 0).all())


def test_fingerprint_changes_with_each_input(tmp_path: Path) -> None:
    path = write_pairs(tmp_path / "p.jsonl")
    base = module(path).fingerprint
    assert module(path, batch_size=5, num_workers=1).fingerprint == base  # batching does not change the pairs
    assert module(path, seed=8).fingerprint == base  # nor does the seed of the training order
    assert len(base) == 64
    other = write_pairs(tmp_path / "q.jsonl")
    other.write_text(path.read_text().replace("yes 3", "yes 4"))
    variants = [
        module(other),
        module(path, format="pairs"),
        module(path, tokenizer=CharTokenizer(list(" 0123456789abcdefghijklmnopqrstuvwxyz!"))),
        module(path, tokenizer=BYTES),
        module(path, block_size=17),
        module(path, prompt_budget=5),
        module(path, val_fraction=0.2),
        module(path, split_seed=8),
    ]
    prints = [base, *(dm.fingerprint for dm in variants)]
    assert len(set(prints)) == len(prints)
    assert module(path, prompt_budget=8).fingerprint == base  # 8 is the default: half of block_size 16
