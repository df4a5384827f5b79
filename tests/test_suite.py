"""The test suite's own set-up: what keeps it within minutes on 2 cores."""

import pytest

GROUP = "suite_grouping"


@pytest.mark.xdist_group(GROUP)
def test_xdist_groups_reach_the_scheduler(request):
  """Tests that share an expensive session fixture (tests/conftest.py's tiny
  runs, the multihost pair, the all-options GAN steps) carry an xdist_group
  mark, so that `--dist loadgroup` (setup.cfg) sends them to one worker,
  which builds the fixture once. pytest-xdist passes the group to its
  scheduler as a suffix of the node id; a pytest that ignores that renaming
  (9.2, hence the pin in setup.cfg) spreads a group over the workers."""
  if not getattr(request.config.option, "loadgroup", False):
    pytest.skip("not running under pytest-xdist with --dist loadgroup")
  assert request.node.nodeid.endswith(f"@{GROUP}"), request.node.nodeid
