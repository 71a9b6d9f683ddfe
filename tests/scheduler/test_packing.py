"""Packing invariants: every nonzero exactly once, indices in range, balancing never slower."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sieve.scheduler.packing import batch_cost, nm_ok, pack_nm, pack_unstructured, row_groups, unpack


@st.composite
def tiles(draw):
    k, r = draw(st.integers(1, 40)), draw(st.integers(1, 90))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    w = rng.integers(-127, 128, (k, r)).astype(np.int8)
    w[rng.random((k, r)) < draw(st.sampled_from([0.0, 0.5, 0.9, 0.99, 1.0]))] = 0
    if draw(st.booleans()):
        w[rng.integers(0, k)] = 0                      # a row with no nonzero at all
    return w


@settings(max_examples=300, deadline=None)
@given(w=tiles(), lanes=st.sampled_from([1, 4, 8, 16]), pe_rows=st.sampled_from([1, 3, 16]), balance=st.booleans())
def test_unstructured_packing_is_exact(w, lanes, pe_rows, balance):
    t = pack_unstructured(w, lanes, pe_rows, balance)
    k, r = w.shape
    np.testing.assert_array_equal(unpack(t.blob, t.fmt, k, r, lanes), w)        # each nonzero once, in place
    assert t.nnz == np.count_nonzero(w)
    assert t.groups == int(row_groups(w, lanes).sum())
    header = np.frombuffer(t.blob[:4 * k], "<u2").reshape(k, 2)
    assert sorted(header[:, 0]) == list(range(k))                          # a permutation of the channels
    total = t.groups * lanes
    index = np.frombuffer(t.blob[4 * k + total + total % 2:][:2 * total], "<u2")
    assert (index < r).all()


@settings(max_examples=300, deadline=None)
@given(w=tiles(), lanes=st.sampled_from([1, 4, 16]), pe_rows=st.sampled_from([2, 3, 16]))
def test_balanced_order_never_slower_than_natural(w, lanes, pe_rows):
    balanced = pack_unstructured(w, lanes, pe_rows, True).batch_groups
    natural = pack_unstructured(w, lanes, pe_rows, False).batch_groups
    assert balanced <= natural
    assert natural == batch_cost(row_groups(w, lanes), pe_rows)


@settings(max_examples=200, deadline=None)
@given(w=tiles(), nm=st.sampled_from([(1, 4), (2, 4), (4, 8), (2, 16)]), lanes=st.sampled_from([4, 8, 16]))
def test_nm_packing_is_exact(w, nm, lanes):
    n, m = nm
    k, r = w.shape
    blocks = np.pad(w, ((0, 0), (0, (-r) % m))).reshape(k, -1, m).copy()
    for i in range(blocks.shape[0]):                   # keep the first n nonzeros of every block
        for j in range(blocks.shape[1]):
            nz = np.flatnonzero(blocks[i, j])
            blocks[i, j, nz[n:]] = 0
    w = blocks.reshape(k, -1)[:, :r].copy()
    assert nm_ok(w, n, m)
    t = pack_nm(w, n, m, lanes, 4)
    np.testing.assert_array_equal(unpack(t.blob, t.fmt, k, r, lanes), w)
    assert t.groups == k * -(-(-(-r // m) * n) // lanes)


def test_hand_computed_batch_cost():
    # rows with 5, 0, 9, 1 nonzeros on 4 lanes: 2, 0, 3, 1 groups; 2 PE rows
    w = np.zeros((4, 16), np.int8)
    for row, nnz in enumerate((5, 0, 9, 1)):
        w[row, :nnz] = 1
    assert pack_unstructured(w, 4, 2, balance=False).batch_groups == max(2, 0) + max(3, 1)   # 5
    assert pack_unstructured(w, 4, 2, balance=True).batch_groups == max(3, 2) + max(1, 0)    # 4
