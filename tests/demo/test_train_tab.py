"""The Train tab's form values become a TrainConfig, or a message naming the bad value."""
import pytest

from demo.tabs.train import config_from
from engine.errors import UserError
from engine.train import TrainConfig


def test_form_values_convert_to_the_engine_types():
    cfg = config_from(dict(model="resnet10t", weights="scratch", epochs=3.0, lr=None, batch_size=32.0, bf16="off",
                           channels_last="auto", progressive_resize=True, mixup=0.2, seed=4.0))
    assert cfg == TrainConfig(model="resnet10t", epochs=3, batch_size=32, bf16=False, channels_last=None,
                              progressive_resize=True, mixup=0.2, seed=4)
    assert cfg.resolved_lr() == 1e-2  # an empty LR box: the engine's default for scratch weights


@pytest.mark.parametrize("values,needle", [
    (dict(epochs=2.5), "Epochs must be a whole number"),
    (dict(weight_decay="lots"), "Weight decay must be a number"),
    (dict(bf16="maybe"), "Bf16 must be auto, on or off"),
    (dict(batch_size=1), "Batch size must be from 2"),
    (dict(lr_mult=0.5), "Discriminative LR ratio \\(lr_mult\\) must be >= 1"),
])
def test_bad_form_values_name_the_setting(values, needle):
    with pytest.raises(UserError, match=needle):
        config_from(values)
