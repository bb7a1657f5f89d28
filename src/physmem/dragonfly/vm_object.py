"""VM objects as the DragonFly page layer needs them, and the lockless page hash.

A :class:`VmObject` owns pages by page index (``rb_memq``), counts them, carries a
generation number, a colour offset (``pg_color``) for page colouring and the
writeable/maybe-dirty marks that pagers read.

The page hash (``vm_page_hash``) is a lockless heuristic cache of (object, pindex) -> page:
4-way set associative, sized at ``vm_page_startup_finish`` (4096 entries doubled while below
``vm_page_array_size / 16``, at most 8 Mi), indexed by a CRC32C of the object pointer.
physmem gives each object a fake kernel pointer (:attr:`VmObject.kva`) so the hash spreads
as DragonFly's does.  Victim choice keeps DragonFly's quirk: ``best_delta`` is never
updated after the first slot.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

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


@dataclass(eq=False)
class VmObject:
    """``struct vm_object``, the parts the page layer touches."""

    id: int
    type: str = OBJT_DEFAULT
    pg_color: int = 0
    memq: dict[int, int] = field(default_factory=dict)   # pindex -> page index
    resident_page_count: int = 0
    generation: int = 0
    writeable: bool = False
    maybe_dirty: bool = False
    onemapping: bool = True
    token: threading.RLock = field(default_factory=threading.RLock)

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
