"""`bind`: a module-level handler made into a Gradio event function, its first arguments fixed.

The handlers (demo/handlers/) are plain functions of the app's context, a tab's components and the event's inputs,
so a test calls them directly. Gradio, though, reads much from the function it is given: its signature (the API's
parameters, `progress=gr.Progress()`, `evt: gr.SelectData` found by type hint), its name and docstring (the API
page), and whether it is a generator function (those stream). functools.partial keeps the signature but loses
the type hints and the name, so Gradio would never pass a SelectData; `bind` keeps all of them.
"""
from __future__ import annotations

import inspect
import typing


def bind(fn, *first):
    """`fn` with its first `len(first)` parameters set to `first`, as Gradio sees an event function."""
    # Annotations resolved here, in fn's module: the bound function's module could not resolve fn's strings.
    hints = typing.get_type_hints(fn)
    signature = inspect.signature(fn)
    rest = [p.replace(annotation=hints.get(p.name, p.empty)) for p in list(signature.parameters.values())[len(first):]]
    if inspect.isgeneratorfunction(fn):
        def bound(*args, **kwargs):
            return (yield from fn(*first, *args, **kwargs))
    else:
        def bound(*args, **kwargs):
            return fn(*first, *args, **kwargs)
    bound.__name__ = bound.__qualname__ = fn.__name__
    bound.__doc__, bound.__module__ = fn.__doc__, fn.__module__
    bound.__signature__ = signature.replace(parameters=rest, return_annotation=signature.empty)
    bound.__annotations__ = {p.name: p.annotation for p in rest if p.annotation is not p.empty}
    return bound
