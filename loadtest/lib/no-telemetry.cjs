// Preloaded into artillery with NODE_OPTIONS="--require <this file>" (see run.sh).
//
// Artillery 2 sends anonymous telemetry through posthog-node and, at exit, waits
// for it to flush. Without network access that flush stalls every run for ~12 s on
// a DNS look-up that cannot succeed (ARTILLERY_DISABLE_TELEMETRY=true still sends
// an anonymised event). Replace posthog-node with a no-op before artillery loads it.
'use strict';
const Module = require('module');

class NoopPostHog {
  capture() {}
  identify() {}
  flush() { return Promise.resolve(); }
  shutdown() { return Promise.resolve(); }
  shutdownAsync() { return Promise.resolve(); }
}

const originalLoad = Module._load;
Module._load = function load(request, parent, isMain) {
  if (request === 'posthog-node') {
    return { PostHog: NoopPostHog, default: NoopPostHog };
  }
  return originalLoad.call(this, request, parent, isMain);
};
