import pytest
import timm
import torch
import torch.nn.functional as F

from engine import small_conv


@pytest.mark.parametrize("size,stride,padding,kernel", [(2, 1, 1, 3), (4, 2, 1, 3), (4, 2, 0, 1), (1, 1, 1, 3), (8, 1, 1, 3)])
def test_small_map_path_equals_the_convolution(size, stride, padding, kernel):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(16, 24, kernel, stride=stride, padding=padding, bias=True)
    x = torch.randn(5, 16, size, size, requires_grad=True)
    expected = F.conv2d(x, conv.weight, conv.bias, stride, padding)
    grads_expected = torch.autograd.grad(expected.square().sum(), [x, conv.weight, conv.bias])
    assert small_conv.speed_up(conv) == 1
    out = conv(x)
    grads = torch.autograd.grad(out.square().sum(), [x, conv.weight, conv.bias])
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)
    for g, ge in zip(grads, grads_expected):
        torch.testing.assert_close(g, ge, rtol=1e-4, atol=1e-3)


def test_whole_model_output_is_unchanged_and_only_small_maps_take_the_path(monkeypatch):
    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=4).eval()
    x = torch.randn(3, 3, 64, 64)  # the last stage runs at 2x2
    expected = model(x)
    keys = list(model.state_dict())
    assert small_conv.speed_up(model) == sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    calls, unfold = [], F.unfold
    monkeypatch.setattr(F, "unfold", lambda *a, **k: calls.append(1) or unfold(*a, **k))
    torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-4)
    assert len(calls) == 5  # layer4: 3x3 stride-2, its 1x1 downsample, three 3x3 at 2x2; nothing larger
    assert list(model.state_dict()) == keys


@pytest.mark.parametrize("size,stride,padding,kernel", [(2, 1, 1, 3), (4, 2, 1, 3), (4, 2, 0, 1), (3, 2, 1, 3)])
def test_channels_last_path_equals_the_convolution_and_stays_channels_last(size, stride, padding, kernel):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(16, 24, kernel, stride=stride, padding=padding, bias=True).to(memory_format=torch.channels_last)
    x = torch.randn(5, 16, size, size).contiguous(memory_format=torch.channels_last).requires_grad_()
    expected = F.conv2d(x, conv.weight, conv.bias, stride, padding)
    grads_expected = torch.autograd.grad(expected.square().sum(), [x, conv.weight, conv.bias])
    small_conv.speed_up(conv)
    out = conv(x)
    grads = torch.autograd.grad(out.square().sum(), [x, conv.weight, conv.bias])
    assert out.shape == expected.shape and out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)
    for g, ge in zip(grads, grads_expected):
        torch.testing.assert_close(g, ge, rtol=1e-4, atol=1e-3)
