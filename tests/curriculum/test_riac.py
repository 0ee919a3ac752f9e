"""RIAC as the reference code runs it, on hand-built report sequences whose splits are derived by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_icl.config import ConfigError
from jaxrl_icl.curriculum import RIACConfig, riac

# Three clusters on the line y = 0.5: A at x = 0.1, B at 0.5, C at 0.9 (reports in this order).
X = {"A": 0.1, "B": 0.5, "C": 0.9}
REPORTS = [("A", 0), ("B", 0), ("C", 0), ("A", 0), ("B", 0), ("C", 1), ("A", 0), ("B", 0), ("C", 1), ("B", 0), ("B", 0)]


def _feed(config, reports, seed=0, state=None):
    update = jax.jit(riac.update)
    state = riac.init(jax.random.key(seed), config) if state is None else state
    for x, r in reports:
        state = update(state, jnp.array([x, 0.5], jnp.float32), jnp.float32(r))
    return state


def _clusters(config, seed=0):
    return _feed(config, [(X[c], r) for c, r in REPORTS], seed)


def _config(**kw):
    return RIACConfig(max_region_size=10, min_child_pairs=3, min_dims_range_ratio=0.05, nb_split_attempts=20,
                      discard_ratio=0.4, **kw)


def test_a_full_root_splits_by_the_cut_of_largest_alp_difference():
    # The 11th report fills the root (10 + 1 pairs). y is constant, so every cut is along x; a cut
    # leaving >= 3 pairs on each side lies in [0.1, 0.9): below 0.5 it separates A | B+C, from 0.5
    # on A+B | C (B at x = 0.5 goes with the side <= the cut).
    #   A = (0, 0, 0): ALP 0.  B+C = (0,0,0,1,0,1,0,0): halves (0,0,0,1) | (0,1,0,0), ALP 0.
    #   A+B = all 0: ALP 0.    C = (0, 1, 1): older half (0, 1), newer (1), ALP |0.5 - 1| = 0.5.
    # So the cut is A+B | C (score 0.5 > 0), at some x in [0.5, 0.9).
    state = _clusters(_config(children_alp_of_last_attempt=False))
    assert int(state.num_nodes) == 3
    np.testing.assert_array_equal(state.is_leaf[:3], [False, True, True])
    np.testing.assert_array_equal(state.size[:3], [11, 8, 3])  # the root keeps its buffer
    cut = float(state.high[1, 0])
    assert 0.5 <= cut < 0.9
    np.testing.assert_allclose(state.low[:3], [[0, 0], [0, 0], [cut, 0]])
    np.testing.assert_allclose(state.high[:3], [[1, 1], [cut, 1], [1, 1]])
    # children keep their pairs in report order (oldest first from slot 0)
    np.testing.assert_allclose(state.tasks[2, :3, 0], [0.9, 0.9, 0.9])
    np.testing.assert_array_equal(state.rewards[2, :3], [0, 1, 1])
    np.testing.assert_array_equal(state.rewards[1, :8], np.zeros(8))
    np.testing.assert_allclose(state.tasks[1, :8, 0], [0.1, 0.5, 0.1, 0.5, 0.1, 0.5, 0.5, 0.5])
    # root: window = the newest 10 of its 11 pairs, halves (0,0,0,1,0) | (0,0,1,0,0): ALP 0
    np.testing.assert_allclose(state.alp[:3], [0.0, 0.0, 0.5])


def test_the_root_and_the_leaf_receive_every_later_report_and_refresh_their_alp():
    state = _clusters(_config(children_alp_of_last_attempt=False))
    state = _feed(state.config, [(0.9, 1.0)], state=state)
    # root: 11 pairs (the oldest dropped), newest 10 = rewards of reports 2..11:
    #   (0,0,0,1,0) | (0,1,0,0,1): ALP |0.2 - 0.4| = 0.2
    # C leaf: (0, 1, 1, 1): (0, 1) | (1, 1): ALP 0.5; the A+B leaf is untouched
    np.testing.assert_array_equal(state.size[:3], [11, 8, 4])
    np.testing.assert_allclose(state.alp[:3], [0.2, 0.0, 0.5], atol=1e-6)
    assert int(state.num_nodes) == 3  # the full root is not a leaf: it never splits again


def test_reference_quirk_children_get_the_alps_of_the_last_attempted_cut():
    # With the quirk the made cut is still A+B | C, but the children get the ALPs of the last
    # attempted cut: (0, 0.5) if that was A+B | C, (0, 0) if it was A | B+C (each has chance 1/2).
    got = set()
    for seed in range(8):
        state = _clusters(_config(), seed)
        assert 0.5 <= float(state.high[1, 0]) < 0.9
        alp = tuple(np.round(np.asarray(state.alp[1:3]), 6))
        assert alp in {(0.0, 0.5), (0.0, 0.0)}
        got.add(alp)
        # the first report landing in the C leaf gives it its own ALP again: (0, 1, 1, 1) -> 0.5
        assert float(_feed(state.config, [(0.9, 1.0)], state=state).alp[2]) == pytest.approx(0.5)
    assert got == {(0.0, 0.5), (0.0, 0.0)}
    assert RIACConfig().children_alp_of_last_attempt  # the default is the reference's behaviour


def test_a_full_leaf_without_valid_cut_forgets_its_oldest_pairs():
    # All tasks within x in [0.05, 0.15] on y = 0.5: every cut leaving 3 pairs per side lies in that
    # band, so a child would be narrower than 0.25 of the box: no valid cut. The 11th report makes
    # the root drop its int(0.4 * 10) = 4 oldest pairs (7 left: rewards 0.4 .. 1.0), ALP over (.4,.5,.6,.7) | (.8,.9,1).
    config = RIACConfig(max_region_size=10, min_child_pairs=3, min_dims_range_ratio=0.25, discard_ratio=0.4)
    xs = 0.05 + 0.01 * np.arange(15)
    state = _feed(config, [(xs[i], i / 10) for i in range(11)])
    assert int(state.num_nodes) == 1 and int(state.size[0]) == 7
    assert float(state.alp[0]) == pytest.approx(0.9 - 0.55)
    # four more reports of 0 fill it again (11) and it drops 4 again: (.8, .9, 1, 0) | (0, 0, 0)
    state = _feed(config, [(xs[i], 0.0) for i in range(11, 15)], state=state)
    assert int(state.size[0]) == 7
    assert float(state.alp[0]) == pytest.approx(0.675)
    assert int(state.count) == 15


def test_alp_is_zero_up_to_two_pairs_and_the_older_half_takes_the_odd_pair():
    config = _config(children_alp_of_last_attempt=False)
    state = _feed(config, [(0.3, 0.0), (0.3, 1.0)])
    assert float(state.alp[0]) == 0.0  # n = 2
    state = _feed(config, [(0.3, 1.0)], state=state)
    assert float(state.alp[0]) == pytest.approx(0.5)  # (0, 1) | (1)
    state = _feed(config, [(0.3, 1.0), (0.3, 0.0)], state=state)
    assert float(state.alp[0]) == pytest.approx(abs(2 / 3 - 0.5))  # (0, 1, 1) | (1, 0)


def test_sampling_modes():
    state = _clusters(_config(children_alp_of_last_attempt=False))  # ALPs: root 0, A+B 0, C 0.5
    keys = jax.random.split(jax.random.key(0), 2000)

    def draws(**kw):
        s = state.replace(config=_config(children_alp_of_last_attempt=False, **kw))
        return np.asarray(jax.jit(jax.vmap(riac.sample, in_axes=(0, None)))(keys, s)[0])

    cut = float(state.low[2, 0])
    # region mode only: uniform inside the C leaf, the only node with ALP > 0
    inside = draws(random_task_ratio=0.0, mutation_ratio=0.0)
    assert np.all(inside[:, 0] >= cut) and abs(inside[:, 0].mean() - (cut + 1) / 2) < 0.02
    assert abs(inside[:, 1].mean() - 0.5) < 0.02
    # mutation mode without noise: the C leaf's lowest-competence pair (the oldest of them), (0.9, 0.5)
    mutated = draws(random_task_ratio=0.0, mutation_ratio=1.0, mutation_std=0.0)
    np.testing.assert_allclose(mutated, np.broadcast_to([0.9, 0.5], mutated.shape), atol=1e-6)
    # with noise: clipped to the leaf, 1e-5 inside its faces
    noisy = draws(random_task_ratio=0.0, mutation_ratio=1.0, mutation_std=0.3)
    assert noisy[:, 0].min() >= cut + 1e-5 - 1e-7 and noisy.max() <= 1 - 1e-5 + 1e-7
    assert abs(np.median(noisy[:, 1]) - 0.5) < 0.03
    # default 70 / 20 / 10: 20% uniform in the box is the only source of x < cut - 0.02 here
    mixed = draws()
    assert abs(np.mean(mixed[:, 0] < cut) - 0.2 * cut) < 0.03


def test_mutation_mode_before_any_report_is_uniform_in_the_box():
    config = RIACConfig(low=(-1.0, 2.0), high=(0.0, 5.0), random_task_ratio=0.0, mutation_ratio=1.0,
                        min_dims_range_ratio=0.25)
    state = riac.init(jax.random.key(0), config)
    keys = jax.random.split(jax.random.key(1), 500)
    tasks = np.asarray(jax.jit(jax.vmap(riac.sample, in_axes=(0, None)))(keys, state)[0])
    assert np.all((tasks >= [-1, 2]) & (tasks <= [0, 5]))
    np.testing.assert_allclose(tasks.mean(0), [-0.5, 3.5], atol=0.15)


def test_node_capacity_is_the_split_rules_bound_and_a_smaller_one_refuses_splits():
    assert RIACConfig().node_capacity == 2 * 15 ** 2 - 1
    assert RIACConfig(low=(0.0,) * 3, high=(1.0,) * 3, min_dims_range_ratio=0.25).node_capacity == 2 * 4 ** 3 - 1
    config = _config(children_alp_of_last_attempt=False, max_nodes=2)
    state = _clusters(config)
    assert int(state.num_nodes) == 1 and int(state.num_refused_splits) == 1
    assert int(state.size[0]) == 7  # the refused split became a discard


def test_tasks_outside_the_box_are_stored_nowhere_but_counted():
    state = _feed(_config(children_alp_of_last_attempt=False), [(1.5, 1.0), (0.5, 1.0)])
    assert int(state.count) == 2 and int(state.num_outside) == 1 and int(state.size[0]) == 1


@pytest.mark.parametrize("field,value", [("max_region_size", 0), ("min_child_pairs", 0), ("max_nodes", -1),
                                         ("min_dims_range_ratio", 0.6), ("nb_split_attempts", 0),
                                         ("discard_ratio", 1.5), ("mutation_ratio", 0.9), ("mutation_std", -1.0)])
def test_bad_riac_config_names_the_field(field, value):
    with pytest.raises(ConfigError, match=f"^{field}"):
        RIACConfig(**{field: value})
