"""TGC-Net's learning-rate schedule: linear warm-up then cosine annealing per iteration with train.json, a constant
learning rate (no scheduler built at all) with demo.json, as the recorded demo numbers were trained."""

from __future__ import annotations

import math
import os

import pytest
from ignite.engine import Engine, Events
from monai.bundle import ConfigParser

CONFIGS = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "bundles", "tgcnet", "configs"
)
STEPS_PER_EPOCH = 6


def _parser(*overlays: str, **overrides) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([os.path.join(CONFIGS, name) for name in ("train.json", *overlays)])
    parser.update(
        {
            # No data and no CLIP: a one-weight network and a loader of STEPS_PER_EPOCH batches.
            "network_def": {"_target_": "torch.nn.Linear", "in_features": 1, "out_features": 1},
            "device": "$torch.device('cpu')",
            "train#dataloader": f"$[None] * {STEPS_PER_EPOCH}",
            **overrides,
        }
    )
    parser.get_parsed_content("flag_check")
    return parser


def _handler(parser: ConfigParser, target: str):
    """The train handler of type ``target``, built from the config (``None`` when switched off)."""
    index = next(i for i, h in enumerate(parser["train#handlers"]) if h["_target_"].endswith(target))
    return parser.get_parsed_content(f"train#handlers#{index}")


def _learning_rates(parser: ConfigParser) -> list[float]:
    """The optimiser's learning rate at every iteration of a fake training of the config's length."""
    optimizer = parser.get_parsed_content("optimizer")
    engine = Engine(lambda engine, batch: optimizer.param_groups[0]["lr"])
    rates = []
    engine.add_event_handler(Events.ITERATION_COMPLETED, lambda e: rates.append(e.state.output))
    handler = _handler(parser, "LrScheduleHandler")
    if handler is not None:
        handler.attach(engine)
    engine.run(range(STEPS_PER_EPOCH), max_epochs=parser.get_parsed_content("train#trainer#max_epochs"))
    return rates


def test_train_json_warms_up_linearly_then_anneals_with_a_cosine():
    parser = _parser(max_epochs=20, warmup_epochs=2)
    assert parser.get_parsed_content("lr_schedule") is True
    peak, warmup, total = 3e-4, 2 * STEPS_PER_EPOCH, 20 * STEPS_PER_EPOCH
    rates = _learning_rates(parser)
    assert len(rates) == total
    # Warm-up: lr(step) = peak * step / warmup for the step the optimiser takes (0 at the first).
    assert rates[:warmup] == pytest.approx([peak * s / warmup for s in range(warmup)])
    cosine = [peak * 0.5 * (1 + math.cos(math.pi * (s - warmup) / (total - warmup))) for s in range(warmup, total)]
    assert rates[warmup:] == pytest.approx(cosine)
    assert max(rates) == pytest.approx(peak) and rates[-1] < 1e-3 * peak
    # The scheduler is resumed with the rest of the trainer state.
    checkpoint = _handler(parser, "TrainerCheckpoint")
    assert set(checkpoint.save_dict) == {"model", "optimizer", "lr_scheduler"}


def test_trainer_max_epochs_set_alone_sets_the_schedule_length():
    # MONAI Label's BundleTrainTask sets train#trainer#max_epochs, not max_epochs.
    parser = _parser(**{"train#trainer#max_epochs": 4, "warmup_epochs": 1})
    scheduler = parser.get_parsed_content("lr_scheduler")
    assert (scheduler.warmup_steps, scheduler.t_total) == (STEPS_PER_EPOCH, 4 * STEPS_PER_EPOCH)


@pytest.mark.parametrize("overlays, overrides", [(("demo.json",), {}), ((), {"lr_schedule": False})])
def test_the_demo_and_the_switch_keep_a_constant_learning_rate(overlays, overrides):
    parser = _parser(*overlays, **overrides)
    assert parser.get_parsed_content("lr_scheduler") is None
    assert _handler(parser, "LrScheduleHandler") is None
    rates = _learning_rates(parser)
    expected = 1e-3 if overlays else 3e-4
    assert len(rates) == parser.get_parsed_content("max_epochs") * STEPS_PER_EPOCH
    assert set(rates) == {expected}
    assert set(_handler(parser, "TrainerCheckpoint").save_dict) == {"model", "optimizer"}


def test_a_text_switch_is_refused():
    with pytest.raises(RuntimeError) as caught:  # MONAI wraps the switch check's TypeError
        _parser(lr_schedule="false")
    assert "'lr_schedule' must be True or False" in str(caught.value.__cause__)
