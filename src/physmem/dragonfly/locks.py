"""Spinlocks for the DragonFly page layer, and a lock-order checker in the spirit of WITNESS.

DragonFly's rule: a page's spinlock is taken before a queue's spinlock; paths that find a
page on a queue (holding the queue's lock) may only *try* a page lock.  (Object tokens
are ``RLock`` objects outside this checker; the model takes them after a page lock, in
vm_page_remove, and never blocks on a page lock while holding one.)  :class:`Spin` is a
lock with a class name; with the checker on (``DragonflyVm(witness=True)``), every
acquisition is recorded per thread and one that breaks the order raises
:class:`LockOrderError` before it blocks.

Every lock is a :class:`WordLock` (its holds shown to the page layer's bodies,
vm_page_core.py) over a plain ``threading`` lock, or over a :class:`Spin` when the checker
is on (chosen when the page layer is built).  The bodies take no Python lock:
:meth:`Witness.path` checks the order of the locks their kernel paths take.

Page spinlocks are striped: 1024 locks shared by pages whose index is equal modulo 1024
(a real per-page lock would cost one Python object per page).
"""

from __future__ import annotations

import functools
import itertools
import threading

from ..errors import InvariantError

# Lock classes in the order they may be acquired (lower rank first).
RANKS = {"page": 1, "queue": 2}
PAGE_STRIPES = 1024
_tokens = itertools.count(1)


class _Me(threading.local):
    """A small number per thread, never 0 (``ME.t``): what a :class:`WordLock` writes as
    its holder, and what a compiled body is told it runs for (a word whose holder is the
    calling thread itself does not stop it: the lock is as good as taken)."""

    def __init__(self) -> None:
        self.t = next(_tokens) & 0xFFFFFFFF or next(_tokens)


ME = _Me()


class LockOrderError(InvariantError):
    """A lock taken against DragonFly's order (WITNESS would panic)."""


class Witness:
    """Per-thread record of held lock classes; checks the order when enabled."""

    def __init__(self) -> None:
        self.enabled = False
        self._tls = threading.local()
        self.checked = 0

    def enable(self, on: bool = True) -> None:
        self.enabled = on

    def held(self) -> list[str]:
        h = getattr(self._tls, "held", None)
        if h is None:
            h = self._tls.held = []
        return h

    def before(self, cls: str, trying: bool) -> None:
        if not self.enabled:
            return
        self.checked += 1
        h = self.held()
        if not trying and h:
            top = max(RANKS[c] for c in h)
            if RANKS[cls] < top or (RANKS[cls] == top and cls != "page"):
                raise LockOrderError(f"lock order reversal: {cls} spinlock taken while "
                                     f"holding {h} (page before queue)")

    def after(self, cls: str) -> None:
        if self.enabled:
            self.held().append(cls)

    def path(self, *steps: tuple[str, bool]) -> None:
        """Check the acquisitions a compiled body stands for, as if taken one inside the
        other (``(class, trying)`` each) and released at its end: the body takes no
        Python lock, WITNESS checks the order its kernel path would take them in."""
        if not self.enabled:
            return
        h = self.held()
        n = len(h)
        try:
            for cls, trying in steps:
                self.before(cls, trying)
                h.append(cls)
        finally:
            del h[n:]

    def release(self, cls: str) -> None:
        if self.enabled:
            h = self.held()
            if cls in h:
                h.reverse()
                h.remove(cls)
                h.reverse()


def make_spin(cls: str, witness: Witness, words, i: int, gate: list):
    """A spinlock of class ``cls`` raising lock word ``i`` of ``words`` (a
    :class:`WordLock`, ``gate`` its gate) over a plain ``threading`` lock (reentrant for
    the striped page locks), or over a checked :class:`Spin` when the lock-order checker
    is on."""
    if witness.enabled:
        return WordLock(Spin(cls, witness), words, i, gate)
    return WordLock(threading.RLock() if cls == "page" else threading.Lock(), words, i,
                    gate)


class WordLock:
    """A lock that shows the page layer's bodies (vm_page_core.py) whether it is held:
    word ``i`` of ``words`` counts its holds and word ``nwords + i`` names the holder
    (``ME.t``), raised right after the acquire, lowered right before the release (only
    the holder writes them).

    A body runs atomically with respect to the holders' critical sections: compiled, it
    holds the GIL; as plain Python (the JIT off, or before the tier) it runs holding the
    gate (``gate[0]``, a lock; None once the bodies are compiled), and the word is raised
    under the gate too.  Either way a body that runs between another thread's real
    acquire and its raise is ordered before that thread's critical section, which has
    not read anything yet."""

    __slots__ = ("_acq", "_gate", "_i", "_own", "_rel", "_words")

    def __init__(self, lock, words, i: int, gate: list) -> None:
        self._acq, self._rel = lock.acquire, lock.release
        self._words, self._i, self._own = words, i, len(words) // 2 + i
        self._gate = gate

    def acquire(self, blocking: bool = True) -> bool:
        """``threading.Lock.acquire``'s signature (True if taken)."""
        if self._acq(blocking):
            w = self._words
            g = self._gate[0]
            # the holder first: a word up never names a thread that let it go
            if g is None:
                w[self._own] = ME.t
                w[self._i] += 1
            else:
                g.acquire()
                w[self._own] = ME.t
                w[self._i] += 1
                g.release()
            return True
        return False

    def try_acquire(self) -> bool:
        return self.acquire(False)

    def release(self) -> None:
        self._words[self._i] -= 1
        self._rel()

    def __enter__(self) -> WordLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class Spin:
    """A spinlock of class ``cls`` (``page``, ``queue``, ``object``) checked by WITNESS."""

    __slots__ = ("_lock", "cls", "witness")

    def __init__(self, cls: str, witness: Witness) -> None:
        # Page spinlocks are striped, so one thread may need the same stripe twice (a
        # page operation calling another on the same page): they are reentrant.
        self._lock = threading.RLock() if cls == "page" else threading.Lock()
        self.cls = cls
        self.witness = witness

    def acquire(self, blocking: bool = True) -> bool:
        """Take the lock (``blocking=False``: only if free; True if taken) -- the
        signature of ``threading.Lock.acquire``, so hot paths call either alike."""
        w = self.witness
        w.before(self.cls, not blocking)
        ok = self._lock.acquire(blocking)
        if ok:
            w.after(self.cls)
        return ok

    def try_acquire(self) -> bool:
        return self.acquire(False)

    def release(self) -> None:
        self.witness.release(self.cls)
        self._lock.release()

    def __enter__(self) -> Spin:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def page_op(refuse_free: bool = True, locked: bool = False):
    """Decorate a public page operation ``fn(self, m, ...)``: check ``m`` first with
    ``self._check_page(m, name, refuse_free)`` (a page of this machine; not a free page
    unless ``refuse_free`` is False), then run it -- holding page ``m``'s spinlock (striped,
    reentrant) when ``locked``, as the kernel's vm_page_spin_lock around queue changes."""
    def deco(fn):
        name = fn.__name__

        @functools.wraps(fn)
        def wrapper(self, m, *a, **kw):
            self._check_page(m, name, refuse_free)
            if not locked:
                return fn(self, m, *a, **kw)
            spin = self.page_spin[m & (PAGE_STRIPES - 1)]
            spin.acquire()
            try:
                return fn(self, m, *a, **kw)
            finally:
                spin.release()
        return wrapper
    return deco
