"""VM objects as the DragonFly page layer needs them, and the lockless page hash.

A :class:`VmObject` owns pages by page index (``rb_memq``), counts them, carries a
generation number, a colour offset (``pg_color``) for page colouring and the
writeable/maybe-dirty marks that pagers read.  The pages, counts, marks and the object's
token live in arrays (:class:`ObjectTable`) that the page layer's compiled bodies read and
write (vm_page_core.py); the object's attributes read them.

The page hash (``vm_page_hash``) is a lockless heuristic cache of (object, pindex) -> page:
4-way set associative, sized at ``vm_page_startup_finish`` (4096 entries doubled while below
``vm_page_array_size / 16``, at most 8 Mi), indexed by a CRC32C of the object pointer.
physmem gives each object a fake kernel pointer (:attr:`VmObject.kva`) so the hash spreads
as DragonFly's does.  Victim choice keeps DragonFly's quirk: ``best_delta`` is never
updated after the first slot.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from types import MappingProxyType

import numpy as np

from .locks import ME
from .vm_page_array import (
    PG_NEED_COMMIT,
    PG_WRITEABLE,
    R_DIRTY,
    R_FLAGS,
    R_OBJ,
    R_ONEXT,
    R_OPREV,
    R_VALID,
    rows_fn,
)

OBJT_DEFAULT = "default"
OBJT_SWAP = "swap"
OBJT_VNODE = "vnode"
OBJ_TYPES = (OBJT_DEFAULT, OBJT_SWAP, OBJT_VNODE)

VM_PAGE_HASH_SET = 4
VM_PAGE_HASH_MAX = 8 * 1024 * 1024
OBJECT_KVA_BASE = 0xFFFFF80001000000

_CRC32C_TABLE: list[int] = []


def _crc_table() -> list[int]:
    if not _CRC32C_TABLE:
        for i in range(256):
            c = i
            for _ in range(8):
                c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
            _CRC32C_TABLE.append(c)
    return _CRC32C_TABLE


def crc32c(data: bytes, crc: int = 0) -> int:
    """CRC-32C (Castagnoli), as DragonFly's ``iscsi_crc32``."""
    table = _crc_table()
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# -- the objects' page tables: arrays the page layer's bodies read and write ------------------
# ``ot`` (int64, T_ROWS x capacity, a power of two): one open-addressing table of every
# object's pages, keyed by (object id, pindex), linear probing, at most half full (deleted
# entries shift back: no tombstones).  Row T_META holds the table's own words.
T_OID, T_PINDEX, T_M, T_META = range(4)     # T_M: page + 1, 0 = an empty slot
T_ROWS = 4
TM_MOVED, TM_COUNT = 0, 1                   # ot[T_META, .]: replaced by a larger table; entries
# ``ob`` (int64, O_ROWS x capacity): per object id, the fields of struct vm_object the
# page layer keeps, the ends of its pages' list (page + 1, in insertion order, linked through
# the page array's ``onext``/``oprev`` rows) and its token as a lock word (hold count,
# holder ``locks.ME.t``).  Column 0 (no object has id 0) holds the array's own words.
O_RPC, O_GEN, O_FLAGS, O_HEAD, O_TAIL, O_TOKEN, O_HOLDER = range(7)
O_ROWS = 7
OBJ_WRITEABLE, OBJ_MAYBE_DIRTY = 1, 2       # ob[O_FLAGS, id]
OB_MOVED = 1                                # ob[O_FLAGS, 0]: replaced by a larger array
TAB_HASH_A = 0x9E3779B1                     # (pindex + id * A) * K, low bits: the home slot
TAB_HASH_K = 0x61C8864680B583EB


@rows_fn
def tab_home(oid: int, pindex: int, mask: int) -> int:
    """The home slot of (oid, pindex) in a table of ``mask + 1`` slots: the low bits of
    (pindex + oid * A) * K, which only the factors' low bits decide (so the same with
    int64 wrapping, compiled, as with Python's integers, which stay below 2**62)."""
    x = (pindex + oid * TAB_HASH_A) & mask
    return (x * (TAB_HASH_K & mask)) & mask


@rows_fn
def tab_find(ot, oid: int, pindex: int) -> int:
    """The slot holding (oid, pindex), or -1 - the empty slot where it would go."""
    mask = ot.shape[1] - 1
    i = (((pindex + oid * TAB_HASH_A) & mask) * (TAB_HASH_K & mask)) & mask  # tab_home
    while True:
        if ot[T_M, i] == 0:
            return -1 - i
        if ot[T_OID, i] == oid and ot[T_PINDEX, i] == pindex:
            return i
        i = (i + 1) & mask


@rows_fn
def tab_room(ot) -> bool:
    """Whether one more entry keeps the table at most half full."""
    return (ot[T_META, TM_COUNT] + 1) * 2 <= ot.shape[1]


@rows_fn
def tab_put(w4, w1, pi, ot, ob, s: int, m: int, oid: int, pindex: int) -> None:
    """vm_page_insert's work on the arrays, at empty slot ``s`` that :func:`tab_find`
    gave for (oid, pindex) (the caller holds the object's token, or its word is down;
    the table has room): page ``m`` enters object ``oid`` at ``pindex``, at the tail of
    its pages' list; resident_page_count and generation up; a page that is writeable,
    NEED_COMMIT or dirty marks the object writeable and maybe-dirty."""
    ot[T_OID, s] = oid
    ot[T_PINDEX, s] = pindex
    ot[T_M, s] = m + 1
    ot[T_META, TM_COUNT] += 1
    t = int(ob[O_TAIL, oid])
    w4[R_OPREV, m] = t
    w4[R_ONEXT, m] = 0
    if t:
        w4[R_ONEXT, t - 1] = m + 1
    else:
        ob[O_HEAD, oid] = m + 1
    ob[O_TAIL, oid] = m + 1
    ob[O_GEN, oid] += 1
    ob[O_RPC, oid] += 1
    w4[R_OBJ, m] = oid
    pi[m] = pindex
    if int(w4[R_FLAGS, m]) & (PG_WRITEABLE | PG_NEED_COMMIT) or w1[R_VALID, m] & w1[R_DIRTY, m]:
        ob[O_FLAGS, oid] |= OBJ_WRITEABLE | OBJ_MAYBE_DIRTY


@rows_fn
def tab_insert(w4, w1, pi, ot, ob, m: int, oid: int, pindex: int) -> int:
    """:func:`tab_put` where (oid, pindex) would go.  Returns 0, or 1 with nothing
    changed if ``pindex`` is taken."""
    s = tab_find(ot, oid, pindex)
    if s >= 0:
        return 1
    tab_put(w4, w1, pi, ot, ob, -1 - s, m, oid, pindex)
    return 0


@rows_fn
def tab_remove(w4, pi, ot, ob, m: int) -> None:
    """vm_page_remove's work on the arrays (the caller holds the page's object's token, or
    its word is down): the entry leaves the table (the entries after it in its probe run
    shift back), the page leaves its object's list; resident_page_count down,
    generation up, the page's object 0."""
    oid = int(w4[R_OBJ, m])
    s = tab_find(ot, oid, int(pi[m]))      # (present: the caller's contract)
    mask = ot.shape[1] - 1
    j = s
    while True:
        j = (j + 1) & mask
        if ot[T_M, j] == 0:
            break
        k = tab_home(int(ot[T_OID, j]), int(ot[T_PINDEX, j]), mask)
        # the entry at j may fill slot s unless its home lies cyclically in (s, j]
        if (s < k <= j) if s <= j else (s < k or k <= j):
            continue
        ot[T_OID, s] = ot[T_OID, j]
        ot[T_PINDEX, s] = ot[T_PINDEX, j]
        ot[T_M, s] = ot[T_M, j]
        s = j
    ot[T_OID, s] = 0
    ot[T_PINDEX, s] = 0
    ot[T_M, s] = 0
    ot[T_META, TM_COUNT] -= 1
    nx = int(w4[R_ONEXT, m])
    pv = int(w4[R_OPREV, m])
    if pv:
        w4[R_ONEXT, pv - 1] = nx
    else:
        ob[O_HEAD, oid] = nx
    if nx:
        w4[R_OPREV, nx - 1] = pv
    else:
        ob[O_TAIL, oid] = pv
    w4[R_ONEXT, m] = 0
    w4[R_OPREV, m] = 0
    ob[O_RPC, oid] -= 1
    ob[O_GEN, oid] += 1
    w4[R_OBJ, m] = 0


@rows_fn
def tab_lookup(ot, oid: int, pindex: int) -> int:
    """The page of ``oid`` at ``pindex``, or -1."""
    s = tab_find(ot, oid, pindex)
    return int(ot[T_M, s]) - 1 if s >= 0 else -1


def _rehash(old: np.ndarray, cap: int) -> np.ndarray:
    """A table of ``cap`` slots with ``old``'s entries (numpy: rounds in which every entry
    not placed yet tries its next slot, the first of those wanting one empty slot taking
    it; every slot between an entry's home and its place is taken, as linear probing
    needs).  ``old`` must not change meanwhile (it is marked moved first)."""
    live = np.flatnonzero(old[T_M])
    oid, pin, mm = old[T_OID, live], old[T_PINDEX, live], old[T_M, live]
    new = np.zeros((T_ROWS, cap), np.int64)
    mask = np.uint64(cap - 1)
    pos = (((pin.view(np.uint64) + oid.view(np.uint64) * np.uint64(TAB_HASH_A))
            * np.uint64(TAB_HASH_K)) & mask).astype(np.int64)
    todo = np.arange(len(live))
    while len(todo):
        p = pos[todo]
        free = new[T_M, p] == 0
        slots, first = np.unique(p[free], return_index=True)
        win = todo[free][first]
        new[T_OID, slots], new[T_PINDEX, slots], new[T_M, slots] = oid[win], pin[win], mm[win]
        placed = np.zeros(len(live), bool)
        placed[win] = True
        todo = todo[~placed[todo]]
        pos[todo] = (pos[todo] + 1) & (cap - 1)
    new[T_META, TM_COUNT] = len(live)
    return new


class ObjectTable:
    """The objects' page tables and fields as arrays (``ot``, ``ob``; see above) for one
    page layer.  Both start small and double when full: a new array replaces the old,
    which is first marked moved, so a body handed the old one returns RETRY without
    changing anything and its caller calls again with the new one (callers pass
    ``tab.ot``/``tab.ob`` per call, never keep them).  A replacement and every write from
    Python (the tokens' words, the flags) hold ``lock``; while the bodies run as plain
    Python a replacement holds their gate too (``gate_ref[0]``)."""

    def __init__(self, gate_ref: list, w4: np.ndarray | None = None,
                 pi: np.ndarray | None = None) -> None:
        self.ot = np.zeros((T_ROWS, 1024), np.int64)
        self.ob = np.zeros((O_ROWS, 256), np.int64)
        # the plain bodies' views (Python ints, ~2x faster to index than numpy)
        self.vot, self.vob = memoryview(self.ot), memoryview(self.ob)
        self.lock = threading.Lock()
        self.gate_ref = gate_ref
        self.w4, self.pi = w4, pi

    def _replace(self, which: str, make) -> None:
        """Replace array ``which`` by ``make(old)`` (the old one marked moved first)."""
        g = self.gate_ref[0]
        if g is not None:
            g.acquire()
        try:
            with self.lock:
                old = getattr(self, which)
                if which == "ot":
                    old[T_META, TM_MOVED] = 1
                else:
                    old[O_FLAGS, 0] = OB_MOVED
                new = make(old)
                setattr(self, "v" + which, memoryview(new))
                setattr(self, which, new)
        finally:
            if g is not None:
                g.release()

    def fix(self) -> None:
        """After a body's RETRY: a table at half its slots doubles (a moved array has
        been replaced already: nothing to do)."""
        ot = self.ot
        if not ot[T_META, TM_MOVED] and (ot[T_META, TM_COUNT] + 1) * 2 > ot.shape[1]:
            self._replace("ot", lambda old: _rehash(old, old.shape[1] * 2))

    def add_object(self, oid: int) -> None:
        """Make room for object ``oid``'s row (ids are handed out in order, never
        reused)."""
        if oid >= self.ob.shape[1]:
            def grow(old: np.ndarray) -> np.ndarray:
                new = np.zeros((O_ROWS, max(old.shape[1] * 2, oid + 1)), np.int64)
                new[:, :old.shape[1]] = old
                new[O_FLAGS, 0] = 0
                return new
            self._replace("ob", grow)

    def pages(self, oid: int) -> list[tuple[int, int]]:
        """Object ``oid``'s (pindex, page) pairs in insertion order."""
        out = []
        if self.w4 is None or self.pi is None:
            return out
        onext, pi = self.w4[R_ONEXT], self.pi
        n = int(self.ob[O_HEAD, oid])
        while n:
            out.append((int(pi[n - 1]), n - 1))
            n = int(onext[n - 1])
        return out

    def get(self, oid: int, field: int) -> int:
        return int(self.ob[field, oid])

    def set_flags(self, oid: int, bits: int) -> None:
        with self.lock:
            self.ob[O_FLAGS, oid] |= bits

    def bump(self, oid: int, field: int, delta: int) -> None:
        with self.lock:
            self.ob[field, oid] += delta


class ObjToken:
    """An object's token (``obj->token``, an LWKT token: recursive) as a lock word the
    bodies can test: ``ob[O_TOKEN, id]`` counts its holds, ``ob[O_HOLDER, id]`` names
    the holder (``locks.ME.t``), written after the real acquire and before the release,
    as :class:`~.locks.WordLock` does (under the gate while the bodies are plain
    Python).  A body meeting it held by another thread returns ``-WAIT - (W_TOKEN +
    id)`` (its caller waits: take and drop the token) or, for a try
    (vm_object_hold_try), passes."""

    __slots__ = ("_acq", "_oid", "_rel", "_tab")

    def __init__(self, tab: ObjectTable, oid: int) -> None:
        lock = threading.RLock()
        self._acq, self._rel = lock.acquire, lock.release
        self._tab, self._oid = tab, oid

    def _word(self, delta: int) -> None:
        tab = self._tab
        g = tab.gate_ref[0]
        if g is not None:
            g.acquire()
        with tab.lock:
            ob = tab.ob
            if delta > 0:
                ob[O_HOLDER, self._oid] = ME.t      # the holder first
            ob[O_TOKEN, self._oid] += delta
        if g is not None:
            g.release()

    def acquire(self, blocking: bool = True) -> bool:
        """``threading.RLock.acquire``'s signature (True if taken)."""
        if self._acq(blocking):
            self._word(1)
            return True
        return False

    def release(self) -> None:
        self._word(-1)
        self._rel()

    def held(self) -> bool:
        """Whether any thread holds it."""
        return bool(self._tab.ob[O_TOKEN, self._oid])

    def __enter__(self) -> ObjToken:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class VmObject:
    """``struct vm_object``, the parts the page layer touches: its id, type and colour
    offset here, its pages (``rb_memq``), counts, generation, writeable/maybe-dirty marks
    and token in its page layer's :class:`ObjectTable`."""

    def __init__(self, id: int, type: str = OBJT_DEFAULT, pg_color: int = 0,
                 table: ObjectTable | None = None) -> None:
        self.id = id
        self.type = type
        self.pg_color = pg_color
        self.onemapping = True
        if table is None:                   # an object of no page layer
            table = ObjectTable([None])
        table.add_object(id)
        self._tab = table
        self.token = ObjToken(table, id)

    def __repr__(self) -> str:
        return f"VmObject(id={self.id}, type={self.type!r}, pg_color={self.pg_color})"

    @property
    def memq(self) -> Mapping[int, int]:
        """pindex -> page, in insertion order (a read-only snapshot)."""
        return MappingProxyType(dict(self._tab.pages(self.id)))

    @property
    def resident_page_count(self) -> int:
        return self._tab.get(self.id, O_RPC)

    @property
    def generation(self) -> int:
        return self._tab.get(self.id, O_GEN)

    @property
    def writeable(self) -> bool:
        return bool(self._tab.get(self.id, O_FLAGS) & OBJ_WRITEABLE)

    @property
    def maybe_dirty(self) -> bool:
        return bool(self._tab.get(self.id, O_FLAGS) & OBJ_MAYBE_DIRTY)

    def set_writeable_dirty(self) -> None:
        """vm_object_set_writeable_dirty."""
        self._tab.set_flags(self.id, OBJ_WRITEABLE | OBJ_MAYBE_DIRTY)

    def bump_generation(self) -> None:
        """generation + 1, under the object's token (the bodies change it too)."""
        with self.token:
            self._tab.bump(self.id, O_GEN, 1)

    @property
    def kva(self) -> int:
        """A stand-in for the object's kernel address (hashing only)."""
        return OBJECT_KVA_BASE + self.id * 0x100


class PageHash:
    """``vm_page_hash``: entries of (page index + 1, 0 = empty; object id, pindex, ticks).

    The entries are zero-filled numpy arrays read through memoryviews: an empty slot is
    all zeros, and a large ``np.zeros`` is fresh anonymous memory (calloc), so the slots
    no lookup has written cost no memory (8 Mi entries at 1 TiB were 256 MiB as Python
    lists)."""

    def __init__(self, array_size: int) -> None:
        size = 4096
        while size < array_size // 16 and size < VM_PAGE_HASH_MAX:
            size <<= 1
        self.size = size
        n = size + VM_PAGE_HASH_SET
        self.m = memoryview(np.zeros(n, np.int64))
        self.obj = memoryview(np.zeros(n, np.int64))
        self.pindex = memoryview(np.zeros(n, np.int64))
        self.ticks = memoryview(np.zeros(n, np.int64))
        self._hi_cache: dict[int, int] = {}

    def index(self, obj: VmObject, pindex: int) -> int:
        """The first slot of (obj, pindex)'s set (sets are unaligned)."""
        hi = self._hi_cache.get(obj.id)
        if hi is None:
            # iscsi_crc32 returns a 32-bit value: the shift drops its top two bits.
            hi = (crc32c(obj.kva.to_bytes(8, "little")) << 2) & 0xFFFFFFFF
            hi ^= hi >> 21
            self._hi_cache[obj.id] = hi
        return (hi + pindex * 4) & (self.size - 1)
