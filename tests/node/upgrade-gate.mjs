// A stock socket.io-client whose polling → websocket upgrade waits for the test.
// Not a test file itself (the runner only picks up *.test.mjs).
//
// With default options the client opens the session on HTTP long-polling and probes a
// websocket right away; on loopback the upgrade usually completes before the
// Socket.IO `connect` (measured: ~3 in 4 connections are already on websocket when
// `connect` fires), so "it started on polling and messages flowed over polling" cannot
// be observed without holding the probe back. `gatedUpgrade()` returns the default
// transports (polling first, websocket as the upgrade; webtransport is never offered by
// the server) as engine.io-client transport classes, the websocket one opening its
// probe only after `release()`. Everything else is the stock client: same probe
// (`2probe`/`3probe`), same pause of polling, same `upgrade` packet.
import { transports } from "engine.io-client";

export function gatedUpgrade() {
  let release;
  const gate = new Promise((resolve) => (release = resolve));
  class GatedWebSocket extends transports.websocket {
    doOpen() {
      gate.then(() => {
        // The engine may have been closed while the probe waited.
        if (this.readyState === "opening") super.doOpen();
      });
    }
  }
  return { transports: [transports.polling, GatedWebSocket], release };
}

/**
 * Record what the engine of socket `s` does: every transport it upgrades to, and the
 * transport each `event` arrived on (`s.io.engine.transport.name` at that moment).
 */
export function watchTransport(s, event) {
  const w = { upgrades: [], arrivals: [] };
  s.io.engine.on("upgrade", (t) => w.upgrades.push(t.name));
  if (event) s.on(event, (m) => w.arrivals.push({ m, transport: s.io.engine.transport.name }));
  return w;
}

/** Resolve when the engine of `s` has upgraded to websocket (bounded). */
export function upgraded(s, timeoutMs = 5000) {
  const engine = s.io.engine;
  if (engine.transport.name === "websocket") return Promise.resolve("websocket");
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      engine.off("upgrade", on);
      reject(new Error(`no upgrade within ${timeoutMs} ms (transport ${engine.transport.name})`));
    }, timeoutMs);
    const on = (t) => {
      clearTimeout(timer);
      engine.off("upgrade", on);
      resolve(t.name);
    };
    engine.on("upgrade", on);
  });
}
