"""Import-order fixes that must run before anything imports torchvision or timm."""
import torch


def ensure_torchvision_ops() -> None:
    """Let `import torchvision` (and so `import timm`) work beside a torch build it was not compiled for.

    PyPI's torchvision 0.28.0 is a CUDA build; beside the CPU torch 2.13.0 its compiled ops fail to load
    and its import then dies on `register_fake("torchvision::nms")` with "operator torchvision::nms does
    not exist". Defining the two op schemas lets the import finish. Image classification never calls those
    ops (we decode with PIL, not torchvision.io). On a healthy install the ops exist and this does nothing.
    We keep this guard rather than pulling PyPI's 4.8 GB CUDA torch just to make torchvision's import
    happy (see STACK.md, "Install facts").
    """
    try:
        torch.ops.torchvision.nms  # noqa: B018 (the lookup itself is the test)
    except (AttributeError, RuntimeError):
        global _TORCHVISION_SCHEMAS
        _TORCHVISION_SCHEMAS = torch.library.Library("torchvision", "DEF")
        _TORCHVISION_SCHEMAS.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _TORCHVISION_SCHEMAS.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")


_TORCHVISION_SCHEMAS = None  # keeps the Library object alive: dropping it would unregister the schemas
