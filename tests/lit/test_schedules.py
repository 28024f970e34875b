import math
import pickle
from pathlib import Path

import hydra
import pytest
import torch
from omegaconf import OmegaConf
from torch.optim.lr_scheduler import LambdaLR

from llm.lit.schedules import Constant, Cosine, Linear, WarmupStableDecay

CONF = Path(__file__).resolve().parents[2] / "conf" / "scheduler"


def test_warmup_is_step_plus_one_over_warmup_plus_one() -> None:
    schedule = Constant(warmup_steps=4, total_steps=10)
    assert [schedule(s) for s in range(6)] == pytest.approx([1 / 5, 2 / 5, 3 / 5, 4 / 5, 1.0, 1.0])
    assert schedule(10) == schedule(1000) == 1.0


def test_no_warmup_starts_at_the_base_lr() -> None:
    assert Cosine(warmup_steps=0, total_steps=100)(0) == 1.0
    assert Linear(warmup_steps=0, min_lr_ratio=0.0, total_steps=100)(25) == pytest.approx(0.75)


def test_cosine_by_hand() -> None:
    schedule = Cosine(warmup_steps=10, min_lr_ratio=0.1, total_steps=110)  # decay over steps 10..110
    assert schedule(0) == pytest.approx(1 / 11)
    assert schedule(9) == pytest.approx(10 / 11)
    assert schedule(10) == pytest.approx(1.0)
    assert schedule(35) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.sqrt(2) / 2))  # a quarter: cos(pi/4)
    assert schedule(60) == pytest.approx(0.1 + 0.5 * (1 - 0.1))  # the midpoint: 0.55
    assert schedule(110) == pytest.approx(0.1)
    assert schedule(5000) == pytest.approx(0.1)


def test_cosine_nanogpt_shakespeare_recipe() -> None:
    schedule = Cosine(warmup_steps=100, min_lr_ratio=0.1, total_steps=2000)
    lr = 1e-3
    assert lr * schedule(100) == pytest.approx(1e-3)
    assert lr * schedule(1050) == pytest.approx(5.5e-4)  # (1050 - 100) / 1900 = 1/2
    assert lr * schedule(2000) == pytest.approx(1e-4)


def test_linear_by_hand() -> None:
    schedule = Linear(warmup_steps=20, min_lr_ratio=0.2, total_steps=120)
    assert schedule(20) == pytest.approx(1.0)
    assert schedule(70) == pytest.approx(1 - 0.8 * 0.5)
    assert schedule(95) == pytest.approx(1 - 0.8 * 0.75)
    assert schedule(120) == schedule(200) == pytest.approx(0.2)


def test_warmup_stable_decay_by_hand() -> None:
    schedule = WarmupStableDecay(warmup_steps=10, decay_fraction=0.2, min_lr_ratio=0.0, total_steps=100)
    assert schedule(4) == pytest.approx(5 / 11)
    assert [schedule(s) for s in (10, 50, 80)] == [1.0, 1.0, 1.0]  # the decay starts at 100 - 20
    assert schedule(90) == pytest.approx(0.5)
    assert schedule(95) == pytest.approx(0.25)
    assert schedule(100) == schedule(150) == pytest.approx(0.0)
    floor = WarmupStableDecay(warmup_steps=0, decay_fraction=0.5, min_lr_ratio=0.1, total_steps=100)
    assert floor(75) == pytest.approx(1 - 0.9 * 0.5)


@pytest.mark.parametrize(
    ("schedule", "options", "named"),
    [
        (Cosine, {"warmup_steps": 200, "total_steps": 100}, "scheduler.warmup_steps=200"),
        (Constant, {"warmup_steps": -1, "total_steps": 100}, "scheduler.warmup_steps"),
        (Linear, {"warmup_steps": 1.5, "total_steps": 100}, "scheduler.warmup_steps"),
        (Cosine, {"min_lr_ratio": 1.5, "total_steps": 1000}, "scheduler.min_lr_ratio"),
        (Linear, {"min_lr_ratio": -0.1, "total_steps": 1000}, "scheduler.min_lr_ratio"),
        (WarmupStableDecay, {"decay_fraction": 0.0, "total_steps": 1000}, "scheduler.decay_fraction"),
        (WarmupStableDecay, {"decay_fraction": 1.5, "total_steps": 1000}, "scheduler.decay_fraction"),
        (WarmupStableDecay, {"warmup_steps": 50, "decay_fraction": 0.8, "total_steps": 100}, "decay_fraction"),
        (Cosine, {"warmup_steps": 0, "total_steps": 0}, "trainer.max_steps"),
    ],
)
def test_bad_values_raise_and_name_the_setting(schedule: type, options: dict, named: str) -> None:
    with pytest.raises(ValueError, match=named.replace(".", r"\.")):
        schedule(**options)


def test_lambdalr_state_dict_round_trip(tmp_path: Path) -> None:
    def make() -> tuple[torch.optim.Optimizer, LambdaLR]:
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.5)
        return optimizer, LambdaLR(optimizer, Cosine(warmup_steps=3, min_lr_ratio=0.1, total_steps=20))

    optimizer, scheduler = make()
    for _ in range(7):
        optimizer.step()
        scheduler.step()
    torch.save(scheduler.state_dict(), tmp_path / "sched.pt")

    resumed_optimizer, resumed = make()
    resumed.load_state_dict(torch.load(tmp_path / "sched.pt", weights_only=True))
    assert resumed.get_last_lr() == pytest.approx(scheduler.get_last_lr())
    for _ in range(5):
        optimizer.step()
        scheduler.step()
        resumed_optimizer.step()
        resumed.step()
        assert resumed_optimizer.param_groups[0]["lr"] == pytest.approx(optimizer.param_groups[0]["lr"])
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.5 * Cosine(warmup_steps=3, total_steps=20)(12))


def test_schedules_pickle() -> None:
    schedule = WarmupStableDecay(warmup_steps=5, decay_fraction=0.3, total_steps=50)
    assert pickle.loads(pickle.dumps(schedule)) == schedule


@pytest.mark.parametrize("path", sorted(CONF.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_scheduler_yaml_instantiates(path: Path) -> None:
    schedule = hydra.utils.instantiate(OmegaConf.load(path))(total_steps=2000)
    values = [schedule(s) for s in range(0, 2001, 10)]
    assert 0.0 < schedule(0) < 0.05  # warming up from ~0
    assert all(0.0 <= v <= 1.0 for v in values)
    assert max(values) == pytest.approx(1.0)


def test_scheduler_yamls_are_all_there() -> None:
    assert sorted(p.stem for p in CONF.glob("*.yaml")) == ["constant", "cosine", "linear", "wsd"]


def test_cosine_yaml_is_the_nanogpt_recipe() -> None:
    schedule = hydra.utils.instantiate(OmegaConf.load(CONF / "cosine.yaml"))(total_steps=2000)
    assert schedule == Cosine(warmup_steps=100, min_lr_ratio=0.1, total_steps=2000)
