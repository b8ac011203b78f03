"""The Jinja2 environments templates render in: sandboxed, strict about undefined variables, and bounded.

Jinja's ``SandboxedEnvironment`` stops templates from reaching Python internals (``''.__class__.__mro__``,
``cycler.__init__.__globals__``, ``self._TemplateReference__context`` all fail with ``SecurityError``), but not from
burning CPU and memory: ``{% for x in range(10**9) %}`` or ``{{ 'a' * 10**9 }}`` would hang or exhaust a worker.
So on top of it, every place where work or size can grow calls into ``limits``:

- every ``for`` loop iterates through ``limits.guarded`` (the code generator wraps the loop's iterable), so nested
  loops spend their product from one iteration budget and check the clock;
- every call (functions, methods, macros, ``loop()`` recursion) spends a step, and the methods that pad or repeat
  (``center``, ``ljust``, ``zfill``, ``join``, ``replace``, ``format``, ...) check the size they would build first;
- the operators ``+ * ** %`` are intercepted and refused when their result would be too large; ``~`` (concat) is
  checked after the fact (it can at most add its operands);
- the filters that pad, repeat or fill (``center``, ``indent``, ``format``, ``wordwrap``, ``join``, ``replace``,
  ``batch``, ``slice``, ``sum``) are replaced by checked versions, and every filter's result is size-checked;
- ``range()`` is capped, ``lipsum()`` is gone, and constant folding at compile time is off (it would run filters
  before any budget exists). Jinja still folds constant output expressions
  (``{{ "%9d"|format(1) }}``) while compiling, outside a render: they run under the default limits, and the
  rendered-size check applies to the result.

Stored templates (from the API) use ``ImmutableSandboxedEnvironment`` with no loader: no includes, no lists or
dicts modified. File templates use the same checks in a ``SandboxedEnvironment`` with a ``FileSystemLoader`` on the
templates folder (Jinja's loader refuses names that leave it).
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

from markupsafe import escape

try:  # markupsafe's private C function behind ``escape``; its public ``escape`` if a release moves it
    from markupsafe._speedups import _escape_inner
except ImportError:  # pragma: no cover - markupsafe without its C extension, or another layout

    def _escape_inner(s: str, /) -> str:
        return str(escape(s))


from jinja2 import FileSystemLoader, StrictUndefined, filters, nodes, select_autoescape
from jinja2.compiler import CodeGenerator, Frame
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEnvironment

from .limits import LimitExceeded, bounded_range, ensure_size, guarded, max_size, tick

_MAX_INT_BITS = 1 << 16  # integers a template may build (about 19,700 decimal digits)
_PRINTF_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
_NUMBER = re.compile(r"\d+")
_DICT_ATTRIBUTES = frozenset(dir(dict))  # every attribute a dict instance has (its type's and object's)


class GuardedCodeGenerator(CodeGenerator):
    """Jinja's code generator, with every loop's iterable passed through ``environment.guard_iteration`` and every
    ``~`` concatenation through ``environment.checked_size``; an autoescaped output is written as a call of
    ``escape_call`` (a subclass may call something else)."""

    escape_call = "environment.escape_output("

    def visit_For(self, node: nodes.For, frame: Frame) -> None:  # noqa: N802 - Jinja's visitor naming
        if not _is_guard(node.iter):
            node.iter = nodes.Call(
                nodes.EnvironmentAttribute("guard_iteration"), [node.iter], [], None, None, lineno=node.lineno
            )
        super().visit_For(node, frame)

    def _output_child_pre(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        if frame.eval_ctx.autoescape and not frame.eval_ctx.volatile:
            self.write(self.escape_call)  # what ``escape(`` gives, as a plain str (cheaper)
            if finalize.src is not None:
                self.write(finalize.src)
        else:
            super()._output_child_pre(node, frame, finalize)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:  # noqa: N802
        self.write("environment.checked_size(")
        super().visit_Concat(node, frame)
        self.write(")")


def _is_guard(node: nodes.Node) -> bool:
    return (
        isinstance(node, nodes.Call)
        and isinstance(node.node, nodes.EnvironmentAttribute)
        and node.node.name == "guard_iteration"
    )


escape_str = _escape_inner  # markupsafe's escaping of a plain str, as a plain str (for other modules)


def escape_output(value: Any) -> str:
    """What ``markupsafe.escape`` returns for a ``{{ }}`` in an autoescaped template, as a plain ``str`` for a plain
    ``str`` (Jinja only joins the output chunks: a ``Markup`` object per chunk was a third of the escaping cost)."""
    if type(value) is str:
        return _escape_inner(value)
    return escape(value)


def _length(value: Any) -> int | None:
    return len(value) if isinstance(value, str | bytes | list | tuple | dict | set | frozenset) else None


def checked_size(value: Any) -> Any:
    """``value`` itself, after refusing it if it is a string or collection larger than a rendered part may be."""
    if type(value) is str:  # most values: one length against the limit
        if len(value) > max_size():
            ensure_size(len(value))
        return value
    size = _length(value)
    if size is not None:
        ensure_size(size)
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > _MAX_INT_BITS:
        raise LimitExceeded(f"an integer of more than {_MAX_INT_BITS:,} bits")
    return value


def check_printf(template: str) -> None:
    """Refuse ``%`` formatting whose width or precision would pad beyond the size limit, or comes from an argument."""
    widths = _printf_widths(template) if len(template) <= _CACHED_FORMAT else _parse_printf(template)
    for width in widths:
        if width < 0:
            raise LimitExceeded("a '*' width or precision in % formatting; write the number in the template")
        ensure_size(width, "a % format width or precision")


_CACHED_FORMAT = 256  # a format string is usually a constant of the template, parsed once (long ones each time)


def _parse_printf(template: str) -> tuple[int, ...]:
    """The widths and precisions of ``template``'s conversions in order, -1 for a ``*``."""
    return tuple(
        -1 if number == "*" else int(number)
        for match in _PRINTF_SPEC.finditer(template)
        for number in match.groups()
        if number is not None
    )


_printf_widths = functools.lru_cache(maxsize=512)(_parse_printf)


def _check_format_spec(template: str) -> None:
    """The same for ``str.format``: widths in format specs, none taken from arguments (``{:{w}}``)."""
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError:
        return  # str.format raises the same error itself
    for _, _, spec, _ in fields:
        if not spec:
            continue
        if "{" in spec:
            raise LimitExceeded("a format width taken from an argument; write the number in the template")
        for number in _NUMBER.findall(spec):
            ensure_size(int(number), "a format width or precision")


def _check_join(separator: str, items: list[Any]) -> None:
    total = sum(len(str(item)) for item in items) + len(separator) * max(len(items) - 1, 0)
    ensure_size(total, "a joined string")


def _check_replace(text: str, old: str, new: str, count: int | None = None) -> None:
    occurrences = text.count(old) if old else len(text) + 1
    if count is not None and count >= 0:
        occurrences = min(occurrences, count)
    ensure_size(len(text) + occurrences * max(len(new) - len(old), 0), "a replaced string")


def _check_method(method: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Pre-check the ``str`` methods that can build far more than they are given; returns the (maybe
    materialised) arguments."""
    owner = getattr(method, "__self__", None)
    if not isinstance(owner, str):
        return args
    name = getattr(method, "__name__", "")
    if name in ("center", "ljust", "rjust", "zfill") and args and isinstance(args[0], int):
        ensure_size(args[0], f"str.{name}()")
    elif name == "expandtabs":
        size = args[0] if args else kwargs.get("tabsize", 8)
        if isinstance(size, int):
            ensure_size(len(owner) + owner.count("\t") * size, "str.expandtabs()")
    elif name == "join" and args:
        items = list(guarded(args[0]))
        _check_join(owner, items)
        return (items, *args[1:])
    elif name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        count = args[2] if len(args) > 2 and isinstance(args[2], int) else None
        _check_replace(owner, args[0], args[1], count)
    return args


def _checked_filter(
    func: Callable[..., Any], check: Callable[..., None] | None = None, skip: int = 0
) -> Callable[..., Any]:
    """A filter that spends a step of the budget, runs ``check`` first on its arguments (after the ``skip`` context
    arguments Jinja passes) when it has one, and has its result size-checked (Jinja's ``pass_*`` markers are kept
    by ``functools.wraps``)."""
    if check is None:

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            tick()
            return checked_size(func(*args, **kwargs))

        return wrapper

    @functools.wraps(func)
    def checked(*args: Any, **kwargs: Any) -> Any:
        tick()
        check(*args[skip:], **kwargs)
        return checked_size(func(*args, **kwargs))

    return checked


def _center(value: Any, width: int = 80) -> None:
    ensure_size(int(width), "center()")


def _indent(text: Any, width: int | str = 4, first: bool = False, blank: bool = False) -> None:
    added = len(width) if isinstance(width, str) else int(width)
    text = str(text)
    ensure_size(len(text) + (text.count("\n") + 1) * added, "indent()")


def _format(value: Any, *args: Any, **kwargs: Any) -> None:
    check_printf(str(value))


def _wordwrap(
    text: Any, width: int = 79, break_long_words: bool = True, wrapstring: str | None = None, **_: Any
) -> None:
    text = str(text)
    lines = len(text) // max(int(width), 1) + 1
    ensure_size(len(text) + lines * len(wrapstring or "\n"), "wordwrap()")


def _join(value: Any, d: str = "", attribute: Any = None) -> None:
    if isinstance(value, list | tuple):
        _check_join(str(d), list(value))
    else:
        ensure_size(len(str(d)), "a join separator")


def _replace(text: Any, old: Any, new: Any, count: int | None = None) -> None:
    _check_replace(str(text), str(old), str(new), count)


def _fill(value: Any, count: int, fill_with: Any = None) -> None:
    ensure_size(int(count), "batch() or slice()")


def _sum(iterable: Any, attribute: Any = None, start: Any = 0) -> None:
    if isinstance(iterable, list | tuple):
        sizes = [_length(item) or 0 for item in iterable]
        total = sum(sizes) + (_length(start) or 0)
        ensure_size(total, "sum()")
        ensure_size(total * len(sizes) // 64, "the work of sum() over sequences")


def _join_filter(func: Callable[..., Any]) -> Callable[..., Any]:
    """``join`` over any iterable: materialise it (spending the budget) so the check sees every item."""

    @functools.wraps(func)
    def wrapper(eval_ctx: Any, value: Any, d: str = "", attribute: Any = None) -> Any:
        items = value if isinstance(value, list | tuple) else list(guarded(value))
        _join(items, d, attribute)
        return func(eval_ctx, items, d, attribute)

    return wrapper


def _bounded_filters(defaults: dict[str, Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    checks: dict[str, tuple[Callable[..., Any], Callable[..., None], int]] = {
        "center": (filters.do_center, _center, 0),
        "indent": (filters.do_indent, _indent, 0),
        "format": (filters.do_format, _format, 0),
        "wordwrap": (filters.do_wordwrap, _wordwrap, 1),
        "replace": (filters.do_replace, _replace, 1),
        "batch": (filters.do_batch, _fill, 0),
        "slice": (filters.sync_do_slice, _fill, 0),
        "sum": (filters.sync_do_sum, _sum, 1),
    }
    bounded = {}
    for name, func in defaults.items():
        if name in checks:
            bounded[name] = _checked_filter(*checks[name])
        elif name == "join":
            bounded[name] = _checked_filter(_join_filter(filters.sync_do_join))
        else:
            bounded[name] = _checked_filter(func)
    return bounded


class _BoundedMixin:
    """The budget checks shared by both environments (see the module docstring)."""

    intercepted_binops = frozenset({"+", "*", "**", "%"})
    code_generator_class: type[CodeGenerator] = GuardedCodeGenerator
    binop_table: dict[str, Callable[[Any, Any], Any]]

    def _setup(self) -> None:
        env: Any = self
        env.globals["range"] = bounded_range
        env.globals.pop("lipsum", None)
        env.filters = _bounded_filters(env.filters)
        env.guard_iteration = guarded
        env.checked_size = checked_size
        env.escape_output = escape_output

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        tick()
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                size = _length(seq)
                if size is not None and isinstance(times, int):
                    ensure_size(size * times, "a repeated string or list")
        elif operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
            if abs(left).bit_length() * right > _MAX_INT_BITS:
                raise LimitExceeded(f"{left} ** {right} is larger than {_MAX_INT_BITS:,} bits")
        elif operator == "%" and isinstance(left, str):
            check_printf(left)
        elif operator == "+":
            sizes = (_length(left), _length(right))
            if sizes[0] is not None and sizes[1] is not None:
                ensure_size(sizes[0] + sizes[1], "a concatenated string or list")
        return checked_size(self.binop_table[operator](left, right))

    def getattr(self, obj: Any, attribute: str) -> Any:
        """``obj.attribute`` as the sandbox resolves it, with a shortcut for the common case of a JSON object's key
        (``line.title``): Jinja tries ``getattr`` first and only looks the key up after an ``AttributeError``, which
        costs more than the rest of the lookup. A plain ``dict`` has no attribute outside ``dir(dict)``, so for any
        other name that ``getattr`` is known to fail and the key is what Jinja would return; everything else (a
        missing key, a dict method, any other type) goes the sandbox's own way."""
        if type(obj) is dict and attribute not in _DICT_ATTRIBUTES:
            try:
                return obj[attribute]
            except KeyError:
                pass
        return super().getattr(obj, attribute)  # type: ignore[misc]

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 - Jinja's
        tick()
        args = _check_method(__obj, args, kwargs)
        return checked_size(super().call(__context, __obj, *args, **kwargs))  # type: ignore[misc]

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped: Callable[..., str] | None = super().wrap_str_format(value)  # type: ignore[misc]
        if wrapped is None:
            return None
        template = value.__self__
        _check_format_spec(template)

        @functools.wraps(wrapped)
        def checked(*args: Any, **kwargs: Any) -> str:
            return str(checked_size(wrapped(*args, **kwargs)))

        return checked


_OPTIONS: dict[str, Any] = {
    "undefined": StrictUndefined,
    "optimized": False,  # no constant folding: it would run filters at compile time, outside any budget
    "keep_trailing_newline": True,
    "autoescape": select_autoescape(enabled_extensions=("html", "htm", "xml"), default_for_string=False),
}


class StoredTemplateEnvironment(_BoundedMixin, ImmutableSandboxedEnvironment):
    """For templates stored through the API: the immutable sandbox, no loader, bounded."""

    def __init__(self) -> None:
        super().__init__(**_OPTIONS)
        self._setup()


class FileTemplateEnvironment(_BoundedMixin, SandboxedEnvironment):
    """For the operator's template files: the sandbox with a loader confined to ``folder``, bounded."""

    def __init__(self, folder: Path) -> None:
        super().__init__(loader=FileSystemLoader(folder), **_OPTIONS)
        self._setup()
