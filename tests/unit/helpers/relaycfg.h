/* A relay configuration for tests that start a relay in-process (test_loops, test_oom): the
 * CLI's defaults, on 127.0.0.1 with a port the kernel picks. */
#ifndef UP_TEST_RELAYCFG_H
#define UP_TEST_RELAYCFG_H

#include "relay/relay.h"

/* Fill rc; secret must outlive it. */
void test_relay_cfg(struct up_relay_cfg *rc, const char *secret);

#endif
