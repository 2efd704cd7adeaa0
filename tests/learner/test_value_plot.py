"""The value distribution read-out along an episode (paper Fig. 6/9) from a trained checkpoint."""

import numpy as np
import pytest
import toytask
from test_online_and_cli import _store, tiny_config

from lwd_common.store import EpisodeStore
from lwd_learner.train import restore_session, run_offline
from lwd_learner.value_plot import plot, value_distributions


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("valueplot")
    _store(root / "store", toytask.mixed_dataset(2, n_demo=3, n_rollout=3, n_play=1))
    run_offline(root / "store", root / "run", tiny_config(), progress=False)
    return root


def test_value_distribution_has_one_normalised_row_per_step(trained):
    session = restore_session(trained / "run" / "checkpoints")
    store = EpisodeStore(trained / "store")
    ep = store.get(store.ids()[0])
    p = value_distributions(session, ep, batch=16)  # several batches, the last one partial
    assert p.shape == (ep.num_steps, session.cfg.model.critic.num_atoms)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
    assert (p >= 0).all()


def test_plot_writes_one_panel_per_episode(trained, tmp_path):
    store = EpisodeStore(trained / "store")
    out = plot(trained / "run", trained / "store", store.ids()[:2], tmp_path / "v.png")
    assert out.exists() and out.stat().st_size > 1000
