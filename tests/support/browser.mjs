// Launch options of Debian's Chromium for the browser tests (playwright-core, never a
// downloaded browser), with the flags this machine's closed network needs.
export const LAUNCH = {
  executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
  timeout: 30000,
};
