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

/** Waits until some element matching `selector` has exactly `text` as textContent. */
export function waitText(page, selector, text, timeout = 10000) {
  return page
    .waitForFunction(
      ([sel, t]) => [...document.querySelectorAll(sel)].some((e) => e.textContent === t),
      [selector, text],
      { timeout },
    )
    .catch(async (e) => {
      const seen = await page.$$eval(selector, (els) => els.map((x) => x.textContent)).catch(() => "?");
      throw new Error(`waiting for ${selector} with text ${JSON.stringify(text)}; saw ${JSON.stringify(seen)}: ${e.message}`);
    });
}
