"""physmem's one entry point to Numba: functions compiled on first use, or plain Python.

``njit(fn)`` returns a :class:`Lazy` function.  Calling it the first time imports numba
and compiles ``fn`` (``cache=True``: a second process loads the machine code from the
cache instead of compiling); with ``NUMBA_DISABLE_JIT=1`` or ``PHYSMEM_JIT=0``, or without
numba installed, it is ``fn`` itself, plain Python.  ``fn.py`` is always the plain
function: boot runs it, so that booting (even 1 TiB lazily, whose target is 128 MiB of
peak RSS) never imports numba, whose import alone costs ~114 MiB of resident memory.

A compiled function may call other :class:`Lazy` functions: numba types such a call by
the callee's dispatcher (registered with ``typeof`` when numba is imported), and caches
the caller as usual.

Start-up (issue 13; docs/implementation.md, section 3, "Start-up"): functions made by
:func:`njit_typed` are compiled for one signature each (numba would otherwise compile a
version per literal argument a compiled caller passes), without the C-callable wrapper
nothing uses and without numba's reference counting (they allocate nothing); a function
that only compiled code calls (``Lazy.python`` unset) is typed in its callers by a
dispatcher without the CPython wrapper either, cached under a name of its own.  A
function found in numba's cache is loaded without numba's full target set-up (its typing
and lowering registries), which only a compile needs.

Rules (docs/implementation.md, section 6): one implementation per function, readable as
the kernel's loops over arrays; callers validate arguments before compiled code mutates
state; everything runs with ``NUMBA_DISABLE_JIT=1``.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
import types
from collections.abc import Callable
from typing import Any

_lock = threading.RLock()


def enabled() -> bool:
    """Whether :func:`njit` functions are compiled: numba is installed and neither
    ``NUMBA_DISABLE_JIT=1`` nor ``PHYSMEM_JIT=0`` is set."""
    if os.environ.get("PHYSMEM_JIT", "1") == "0":
        return False
    if os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0"):
        return False
    return "numba" in sys.modules or importlib.util.find_spec("numba") is not None


def _numba() -> Any:
    """Import numba (first compiled call only).  Where the package directory is not
    writable, numba's cache needs a directory of its own: NUMBA_CACHE_DIR, else one under
    the user's cache directory, else the system's temporary directory."""
    if "NUMBA_CACHE_DIR" not in os.environ and not os.access(os.path.dirname(__file__),
                                                             os.W_OK):
        base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
        if not os.access(base if os.path.isdir(base) else os.path.dirname(base), os.W_OK):
            import tempfile
            base = tempfile.gettempdir()
        os.environ["NUMBA_CACHE_DIR"] = os.path.join(base, "physmem-numba")
    import numba
    from numba.extending import typeof_impl

    @typeof_impl.register(Lazy)
    def _typeof_lazy(val: Lazy, c: Any) -> Any:
        # A Lazy called from compiled code is its dispatcher: numba types the call (and
        # compiles the callee) from it.  The caller keeps its module's globals, so numba
        # can cache it.
        return numba.typeof(val.inner())

    return numba


class Lazy:
    """A function compiled by numba on its first call (see the module docstring)."""

    def __init__(self, fn: Callable, sig: str | None = None, rewrites: bool = True) -> None:
        self.fn = fn
        self.sig = sig              # numba's argument types, "(int64[::1], int64, ...)"
        self.rewrites = rewrites    # numba's rewrite passes run (njit_typed)
        self.__name__ = fn.__name__
        self.__doc__ = fn.__doc__
        self._compiled: Callable | None = None
        self._inner: Callable | None = None
        self._py: Callable | None = None
        # Whether Python calls it too (not only compiled callers): then one dispatcher,
        # with the CPython wrapper, serves both (two would be two compiles).
        self.python = False

    def __call__(self, *args: Any) -> Any:
        f = self._compiled
        if f is None:
            f = self.compiled()
        return f(*args)

    @property
    def py(self) -> Callable:
        """The plain Python function, calling the plain versions of its callees (boot
        runs these: no numba import)."""
        if self._py is None:
            self._py = self._with_callees(lambda c: c.py)
        return self._py

    def compiled(self) -> Callable:
        """The function to call from Python: numba's dispatcher (compiled or loaded from
        numba's cache now if needed), or the plain function when the JIT is off."""
        f = self._compiled
        if f is not None:
            return f
        with _lock:
            if self._compiled is None:
                self._compiled = self._compile(False) if enabled() else self.py
            return self._compiled

    def entry(self) -> Callable:
        """:meth:`compiled`, and for a function compiled for one signature its machine
        code's CPython entry point itself: the dispatcher's matching of the arguments'
        types is skipped (~0.15 us a call; bench/RESULTS.md, issue 13, wt13x).  For hot
        callers only, which pass exactly the signature's types (physmem's own arrays,
        ints): the entry point converts each argument to its type without checking it."""
        f = self.compiled()
        overloads = getattr(f, "overloads", None)
        if self.sig and overloads is not None and len(overloads) == 1:
            return next(iter(overloads.values())).entry_point
        return f

    def inner(self) -> Callable:
        """The dispatcher that compiled callers call (numba imported): for a typed
        function that Python does not call, one without the CPython wrapper, which only
        Python's calls need."""
        f = self._inner
        if f is not None:
            return f
        with _lock:
            if self._inner is None:
                self._inner = self._compile(True) if self.sig and not self.python and \
                    enabled() else self.compiled()
            return self._inner

    def _with_callees(self, pick: Callable[[Lazy], Callable]) -> Callable:
        """``fn`` with ``pick(callee)`` in its globals for each Lazy it calls (plain Python
        must not compile): same code, module and name."""
        fn = self.fn
        g = fn.__globals__
        callees = {name: pick(g[name]) for name in fn.__code__.co_names
                   if isinstance(g.get(name), Lazy)}
        if not callees:
            return fn
        g = dict(g)
        g.update(callees)
        return _copy(fn, g, fn.__qualname__)

    def _compile(self, inner: bool) -> Callable:
        """numba's dispatcher of ``fn`` (of a copy named ``<name>__inner`` for ``inner``,
        so that the two versions' cache files differ), compiled or loaded now when typed."""
        numba = _numba()
        fn = self.fn
        if not self.sig:
            try:
                return numba.njit(cache=True)(fn)
            except (OSError, RuntimeError):   # no usable cache directory: compile each time
                return numba.njit(fn)
        opts: dict[str, Any] = {"no_cfunc_wrapper": True, "_nrt": False,
                                "no_rewrites": not self.rewrites}
        if inner:
            # Same code and module globals (numba caches only functions whose globals are
            # their module's), another name for the cache's index.
            fn = _copy(fn, fn.__globals__, fn.__qualname__ + "__inner")
            opts["no_cpython_wrapper"] = True
        try:
            d = numba.njit(cache=True, **opts)(fn)
            _fast_cache_load(d)
        except (OSError, RuntimeError):       # no usable cache directory: compile each time
            d = numba.njit(**opts)(fn)
        d.compile(self.sig)
        d.disable_compile()                   # as numba.njit(sig): this signature only
        return d


def _copy(fn: Callable, g: dict, qualname: str) -> Callable:
    """A function with ``fn``'s code, globals ``g`` and ``qualname``."""
    new = types.FunctionType(fn.__code__, g, fn.__name__, fn.__defaults__, fn.__closure__)
    new.__module__ = fn.__module__
    new.__qualname__ = qualname
    new.__doc__ = fn.__doc__
    return new


def _fast_cache_load(d: Any) -> None:
    """Load dispatcher ``d``'s cached machine code without numba's ``refresh()`` of its
    target: that installs the typing and lowering registries of all numba's builtins
    (~0.1 s and ~70 modules a process) and its reference-counting runtime, which a
    compile needs (numba's compiler refreshes itself) but loading a function compiled
    without NRT does not.  A numba without the private hook keeps its own way."""
    cache = d._cache
    load = getattr(cache, "_load_overload", None)
    guard = getattr(cache, "_guard_against_spurious_io_errors", None)
    if load is None or guard is None:
        return

    def load_overload(sig: Any, target_context: Any) -> Any:
        with guard():
            return load(sig, target_context)
    cache.load_overload = load_overload


def njit(fn: Callable) -> Lazy:
    """Decorator: ``fn`` compiled lazily on its first call (see :class:`Lazy`)."""
    return Lazy(fn)


def njit_typed(*, rewrites: bool = True, **arrays: str) -> Callable[[Callable], Lazy]:
    """A decorator like :func:`njit` for functions compiled for one signature: each
    argument named in ``arrays`` has that numba type (``"int64[::1]"``), every other one
    is an ``int64``.  ``rewrites=False`` skips numba's rewrite passes (array expressions,
    constant getitem and raise, branches pruned by argument types), for functions that
    use none of these: ~5 % of a cold compile (bench/RESULTS.md, issue 13, wt13c)."""
    def decorate(fn: Callable) -> Lazy:
        code = fn.__code__
        names = code.co_varnames[:code.co_argcount]
        return Lazy(fn, "(" + ", ".join(arrays.get(n, "int64") for n in names) + ",)",
                    rewrites)
    return decorate
