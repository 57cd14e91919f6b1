"""The component tables: each schedule step by step against the torch.optim.lr_scheduler
class it stands for, each optimizer and loss against torch's own, the spec syntax."""
import pytest
import torch
import torch.nn.functional as F

from workloads.components import LOSSES, OPTIMIZERS, SCHEDULERS, build_optimizer
from workloads.config import TrainConfig
from workloads.registry import ConfigError, Registry
from workloads.train import lr_at

SPE, EPOCHS, BASE = 7, 12, 0.1  # steps per epoch, epochs, base rate


def ours(scheduler: str) -> list[float]:
    cfg = TrainConfig(optimizer="sgd", lr=BASE, epochs=EPOCHS, scheduler=scheduler)
    return [lr_at(cfg, step // SPE, step, SPE) for step in range(SPE * EPOCHS)]


def torchs(make, per: str) -> list[float]:
    """The rate of every step when torch's scheduler is stepped once per epoch or per step."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=BASE)
    sched, out = make(opt), []
    for step in range(SPE * EPOCHS):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        if per == "step" or (step + 1) % SPE == 0:
            sched.step()
    return out


@pytest.mark.parametrize("spec, make, per", [
    ("constant", lambda o: torch.optim.lr_scheduler.ConstantLR(o, factor=1.0), "epoch"),
    ("step:step_size=3:gamma=0.5", lambda o: torch.optim.lr_scheduler.StepLR(o, 3, 0.5), "epoch"),
    ("multistep:milestones=4/9", lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [4, 9], 0.1), "epoch"),
    ("exponential:gamma=0.8", lambda o: torch.optim.lr_scheduler.ExponentialLR(o, 0.8), "epoch"),
    ("cosine", lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=SPE * EPOCHS), "step"),
    ("warmup:warmup_epochs=2", lambda o: torch.optim.lr_scheduler.LambdaLR(
        o, lambda s: min(1.0, (s + 1) / (2 * SPE))), "step"),
])
def test_each_schedule_is_its_torch_scheduler(spec, make, per):
    assert ours(spec) == pytest.approx(torchs(make, per), rel=1e-12, abs=1e-15)


def test_only_cosine_depends_on_the_runs_length():
    assert [name for name in SCHEDULERS if SCHEDULERS[name].meta["length_dependent"]] == ["cosine"]


def test_lr_schedule_pairs_set_the_base_the_scheduler_multiplies():
    cfg = TrainConfig(optimizer="sgd", lr=0.1, lr_schedule=((2, 0.01),), scheduler="exponential:gamma=0.5",
                      epochs=4)
    assert [lr_at(cfg, e) for e in range(4)] == pytest.approx([0.1, 0.05, 0.01 * 0.25, 0.01 * 0.125])


@pytest.mark.parametrize("spec, cls, kwargs", [
    ("sgd:momentum=0.9:nesterov=true", torch.optim.SGD, {"momentum": 0.9, "nesterov": True}),
    ("adam:beta2=0.99", torch.optim.Adam, {"betas": (0.9, 0.99)}),
    ("adamw", torch.optim.AdamW, {}),
    ("rmsprop:alpha=0.9", torch.optim.RMSprop, {"alpha": 0.9}),
    ("adagrad", torch.optim.Adagrad, {}),
])
def test_optimizers_are_torchs_with_the_specs_parameters(spec, cls, kwargs):
    torch.manual_seed(0)
    w = torch.randn(5, 3, dtype=torch.float64)
    a, b = w.clone().requires_grad_(), w.clone().requires_grad_()
    mine = build_optimizer(OPTIMIZERS.parse(spec), [a], lr=0.05, weight_decay=1e-3)
    theirs = cls([b], lr=0.05, weight_decay=1e-3, **kwargs)
    assert type(mine) is cls
    for _ in range(3):
        for p, opt in ((a, mine), (b, theirs)):
            opt.zero_grad()
            (p ** 3).sum().backward()
            opt.step()
    assert torch.equal(a, b)


def test_losses():
    torch.manual_seed(0)
    logits, y = torch.randn(6, 10, dtype=torch.float64), torch.randint(0, 10, (6,))
    ce = LOSSES.parse("cross_entropy:label_smoothing=0.1")
    assert ce.entry.fn(logits, y, "mean", **ce.params) == F.cross_entropy(logits, y, label_smoothing=0.1)
    mse = LOSSES.parse("mse").entry.fn
    onehot = F.one_hot(y, 10).double()
    assert mse(logits, y, "mean") == F.mse_loss(logits, onehot)
    assert mse(logits, y, "sum") == pytest.approx(6 * F.mse_loss(logits, onehot).item(), rel=1e-12)


def test_a_registry_checks_names_parameters_types_and_values():
    table = Registry("thing")
    table.add("a", lambda size, rate: (size, rate), {"size": 3, "rate": 0.5},
              lambda p: None if p["size"] > 0 else "size must be > 0")
    spec = table.parse("a:rate=0.25")
    assert (spec.name, spec.params, spec.size) == ("a", {"size": 3, "rate": 0.25}, 3)
    assert table.canonical("a:rate=0.5:size=4") == "a:size=4"
    for text, message in (("b", "thing 'b' is unknown; choose from a"),
                          ("a:colour=red", "'colour=red' is not a parameter \\(known: size, rate\\)"),
                          ("a:size=big", "thing a:size: expected int, got 'big'"),
                          ("a:size=0", "thing a:size=0: size must be > 0")):
        with pytest.raises(ConfigError, match=message):
            table.parse(text)
    with pytest.raises(ValueError, match="registered twice"):
        table.add("a", print)
