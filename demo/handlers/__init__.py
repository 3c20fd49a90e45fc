"""The app's event handlers, one module per tab (and `page` for what spans tabs).

Each module holds a dataclass of its tab's components and module-level handlers: plain functions of the app's
Context, those components and the event's inputs that return `{component: new value}` (or yield such dicts
while they stream). A dict names what it changes, so nothing has to line up with an `outputs` list, and a test
calls a handler directly, without a server. The tab modules (demo/tabs/) lay the components out and wire events
to these handlers through demo.wiring.bind; the work itself is in demo/actions.py.
"""
