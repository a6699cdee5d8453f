"""RFC 6962 / RFC 9162 Merkle trees: hashing, compact ranges, proofs and their verification."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from hashlib import sha256 as _sha256

EMPTY_ROOT = hashlib.sha256(b"").digest()


class ProofError(ValueError):
    """Raised when a proof does not verify; the message says what failed."""


def leaf_hash(data: bytes) -> bytes:
    """SHA-256(0x00 || data)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _largest_power_of_two_below(n: int) -> int:
    return 1 << ((n - 1).bit_length() - 1)


def root_of_leaves(hashes: Sequence[bytes]) -> bytes:
    """MTH of a list of leaf hashes (the definition; for tests and small trees)."""
    if not hashes:
        return EMPTY_ROOT
    if len(hashes) == 1:
        return hashes[0]
    k = _largest_power_of_two_below(len(hashes))
    return node_hash(root_of_leaves(hashes[:k]), root_of_leaves(hashes[k:]))


# -- compact ranges: the right edge of a tree -------------------------------------------


def perfect_subtrees(start: int, end: int) -> list[tuple[int, int]]:
    """The (level, index) of the maximal aligned perfect subtrees covering [start, end),
    left to right; node (level, index) covers leaves [index << level, (index + 1) << level)."""
    out = []
    while start < end:
        level = (start & -start).bit_length() - 1 if start else (end - start).bit_length() - 1
        while start + (1 << level) > end:
            level -= 1
        out.append((level, start >> level))
        start += 1 << level
    return out


def fold(hashes: Sequence[bytes]) -> bytes:
    """The root of adjacent perfect subtrees of decreasing size, left to right."""
    if not hashes:
        return EMPTY_ROOT
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = node_hash(h, acc)
    return acc


class CompactRange:
    """The hashes of the perfect subtrees that make up a tree of `size` leaves."""

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()):
        if len(hashes) != bin(size).count("1"):
            raise ValueError("a compact range holds one hash per set bit of its size")
        self.size = size
        self.hashes = list(hashes)

    def append(self, leaf: bytes, on_node: Callable[[int, int, bytes], None] | None = None) -> None:
        """Adds a leaf hash; on_node(level, index, hash) hears of every node it completes."""
        index = self.size
        hashes = self.hashes
        node = leaf
        if on_node is None:
            # The hot path of verifying a whole log: one merge per leaf on average.
            while index & 1:
                node = _sha256(b"\x01" + hashes.pop() + node).digest()
                index >>= 1
        else:
            level = 0
            while (index >> level) & 1:
                node = node_hash(hashes.pop(), node)
                level += 1
                on_node(level, index >> level, node)
        hashes.append(node)
        self.size += 1

    def extend(self, leaves: Iterable[bytes],
               on_node: Callable[[int, int, bytes], None] | None = None) -> None:
        for leaf in leaves:
            self.append(leaf, on_node)

    def root(self) -> bytes:
        return fold(self.hashes)


# -- proofs from stored nodes ----------------------------------------------------------

NodeReader = Callable[[list[tuple[int, int]]], dict[tuple[int, int], bytes]]


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose hashes make the RFC 9162 inclusion path, leaf to root."""
    top, lo, hi = descend(index, 0, size, 1)
    top.reverse()
    return top


def descend(index: int, lo: int, hi: int, stop: int) -> tuple[list[tuple[int, int]], int, int]:
    """The sibling ranges met going down from [lo, hi) towards leaf index, root side first,
    until the range holding it has at most stop leaves; and that range."""
    ranges: list[tuple[int, int]] = []
    while hi - lo > stop:
        k = 1 << ((hi - lo - 1).bit_length() - 1)  # the largest power of two below hi - lo
        if index - lo < k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo = lo + k
    return ranges, lo, hi


def _consistency_ranges(old: int, new: int) -> list[tuple[int, int]]:
    """The leaf ranges whose hashes make the RFC 9162 consistency proof, in order."""
    ranges: list[tuple[int, int]] = []
    lo, hi, m, complete = 0, new, old, True
    while m != hi - lo:
        k = _largest_power_of_two_below(hi - lo)
        if m <= k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo, m, complete = lo + k, m - k, False
    if not complete:
        ranges.append((lo, hi))
    return list(reversed(ranges))


def hashes_of_ranges(ranges: list[tuple[int, int]], read_nodes: NodeReader) -> list[bytes]:
    """The Merkle hash of each leaf range, from stored perfect-subtree hashes (one read)."""
    plans = [perfect_subtrees(a, b) for a, b in ranges]
    wanted = sorted({node for plan in plans for node in plan})
    found = read_nodes(wanted)
    missing = [n for n in wanted if n not in found]
    if missing:
        raise LookupError(f"tree node (level, index) {missing[0]} is not stored")
    return [fold([found[n] for n in plan]) for plan in plans]


def inclusion_proof(index: int, size: int, read_nodes: NodeReader) -> list[bytes]:
    """The RFC 9162 inclusion proof of leaf index in the tree of the first size leaves."""
    if not 0 <= index < size:
        raise ValueError(f"index {index} is not in a tree of size {size}")
    return hashes_of_ranges(inclusion_ranges(index, size), read_nodes)


def consistency_proof(old: int, new: int, read_nodes: NodeReader) -> list[bytes]:
    """The RFC 9162 consistency proof from the tree of size old to that of size new."""
    if not 0 <= old <= new:
        raise ValueError(f"no consistency proof from size {old} to size {new}")
    if old == 0 or old == new:
        return []
    return hashes_of_ranges(_consistency_ranges(old, new), read_nodes)


def root_from_nodes(size: int, read_nodes: NodeReader) -> bytes:
    """The root of the first size leaves, from stored nodes."""
    if size == 0:
        return EMPTY_ROOT
    return hashes_of_ranges([(0, size)], read_nodes)[0]


# -- verification (RFC 9162 2.1.3.2 and 2.1.4.2) --------------------------------------


def prunable_ranges(old: int, new: int, first_signed: Callable[[int], int | None]
                    ) -> list[tuple[int, int, int]]:
    """The stored nodes that moving a pruned prefix of leaves from old to new leaves
    needless, as (level, start, stop) ranges of indexes: those of subtrees wholly before
    new, except the perfect subtrees new is made of and what a consistency proof from each
    signed size below new reads. first_signed(n): the smallest signed size at least n.
    Those wholly before old went with that prefix."""
    ranges = []
    level = 0
    while new >> level:
        start, stop = max(0, (old >> level) - 1), new >> level
        kept = {stop - 1} if stop & 1 else set()
        kept.update(i for i in range(start, stop)
                    if _signed_size_reads(level, i, new, first_signed))
        for i in sorted(kept):
            if start < i:
                ranges.append((level, start, i))
            start = i + 1
        if start < stop:
            ranges.append((level, start, stop))
        level += 1
    return ranges


def _signed_size_reads(level: int, index: int, new: int,
                       first_signed: Callable[[int], int | None]) -> bool:
    """Whether a consistency proof from a signed size below new reads node (level, index).
    From size m it reads the perfect subtrees m is made of (but the whole tree when m is a
    power of two: the old root stands for it), and the right siblings of leaf m - 1's path."""
    if index % 2 == 0:  # a perfect subtree of sizes in [lo, hi)
        lo = ((index + 1) << level) + (index == 0)
        hi = (index + 2) << level
    else:  # the right sibling of leaf m - 1's ancestor, for m in [lo, hi)
        lo = ((index - 1) << level) + 1
        hi = (index << level) + 1
    m = first_signed(lo)
    return m is not None and m < min(hi, new)


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Returns when proof shows leaf at index in the tree of size with root; raises ProofError."""
    if index >= size or index < 0:
        raise ProofError(f"index {index} is outside a tree of size {size}")
    if len(leaf) != 32 or len(root) != 32:
        raise ProofError("leaf and root hashes are 32 bytes")
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if len(p) != 32:
            raise ProofError("a proof hash is not 32 bytes")
        if sn == 0:
            raise ProofError("the proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the proof is shorter than the tree is deep")
    if r != root:
        raise ProofError("the proof does not lead to the root")


def verify_consistency(
    old: int, new: int, proof: Sequence[bytes], old_root: bytes, new_root: bytes
) -> None:
    """Returns when proof shows the tree of size old is a prefix of that of size new."""
    if old < 0 or new < 0 or old > new:
        raise ProofError(f"no tree of size {old} is a prefix of one of size {new}")
    if old == 0:
        raise ProofError("a consistency proof from the empty tree proves nothing")
    if old == new:
        if proof:
            raise ProofError("equal sizes take an empty proof")
        if old_root != new_root:
            raise ProofError("equal sizes but different roots")
        return
    if not proof:
        raise ProofError("the proof is empty")
    if any(len(p) != 32 for p in proof) or len(old_root) != 32 or len(new_root) != 32:
        raise ProofError("proof and root hashes are 32 bytes")
    path = list(proof)
    if old & (old - 1) == 0:  # old is a power of two: its root starts the path
        path.insert(0, old_root)
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("the proof is longer than it should be")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the proof is shorter than it should be")
    if fr != old_root:
        raise ProofError("the proof does not lead to the old root")
    if sr != new_root:
        raise ProofError("the proof does not lead to the new root")


def _valid_subtree(start: int, end: int) -> bool:
    """[start, end) is a subtree: non-empty, and start a multiple of the smallest power of
    two not below its size (draft-ietf-plants-merkle-tree-certs, "subtrees")."""
    if not 0 <= start < end:
        return False
    size = end - start
    return start % (1 << (size - 1).bit_length()) == 0


def verify_subtree_inclusion(
    leaf: bytes, index: int, start: int, end: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Returns when proof shows leaf at index inside subtree [start, end) with hash root."""
    if not _valid_subtree(start, end):
        raise ProofError(f"[{start}, {end}) is not a valid subtree")
    if not start <= index < end:
        raise ProofError(f"index {index} is outside the subtree [{start}, {end})")
    verify_inclusion(leaf, index - start, end - start, proof, root)


def verify_subtree_consistency(
    start: int, end: int, size: int, proof: Sequence[bytes], subtree_root: bytes, root: bytes
) -> None:
    """Returns when proof shows subtree [start, end), hashing to subtree_root, inside the
    tree of size whose root is root; an empty subtree has the empty hash and no proof."""
    if start == end:
        if not 0 <= start <= size:
            raise ProofError(f"empty subtree at {start} is outside a tree of size {size}")
        if proof:
            raise ProofError("an empty subtree takes an empty proof")
        if subtree_root != EMPTY_ROOT:
            raise ProofError("an empty subtree hashes to SHA-256 of nothing")
        return
    if not _valid_subtree(start, end) or end > size:
        raise ProofError(f"[{start}, {end}) is not a valid subtree of a tree of size {size}")
    if any(len(p) != 32 for p in proof):
        raise ProofError("a proof hash is not 32 bytes")
    fn, sn, tn = start, end - 1, size - 1
    if sn == tn:
        while fn != sn:
            fn, sn, tn = fn >> 1, sn >> 1, tn >> 1
    else:
        while fn != sn and sn & 1:
            fn, sn, tn = fn >> 1, sn >> 1, tn >> 1
    if fn == sn:
        fr = sr = subtree_root
        rest = list(proof)
    else:
        if not proof:
            raise ProofError("the proof is empty")
        fr = sr = proof[0]
        rest = list(proof[1:])
    for c in rest:
        if tn == 0:
            raise ProofError("the proof is longer than it should be")
        if sn & 1 or sn == tn:
            if fn < sn:
                fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not sn & 1:
                fn, sn, tn = fn >> 1, sn >> 1, tn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn, tn = fn >> 1, sn >> 1, tn >> 1
    if tn != 0:
        raise ProofError("the proof is shorter than it should be")
    if fr != subtree_root:
        raise ProofError("the proof does not lead to the subtree's hash")
    if sr != root:
        raise ProofError("the proof does not lead to the root")
