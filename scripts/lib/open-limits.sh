# shellcheck shell=bash
# The limits of a confab started by the benchmarks and smoke runs: `open` auth (the
# load clients connect by name) and none of the cluster-wide quotas, per-IP caps or
# protocol-error cut (every load client comes from 127.0.0.1 and sends as fast as
# asked). One list, so a new quota is turned off everywhere at once. The test suites
# do the same through testEnv() (tests/support/server.mjs) and
# crates/confab/tests/common/mod.rs.
OPEN_LIMITS=(--auth open
  --quota-messages-per-user off --quota-messages-per-ip off
  --quota-dms-per-user off --quota-dms-per-ip off
  --quota-joins-per-user off
  --quota-rooms-per-user off --quota-rooms-per-ip off
  --quota-connects-per-user off --quota-connects-per-ip off
  --max-connections-per-ip 0 --protocol-errors-burst 100000)
