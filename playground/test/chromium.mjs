// Debian's Chromium (or $CHROMIUM), headless, as every browser test here launches it: no
// sandbox (tests run as root), no GPU, and none of the background traffic that would leave
// the server's origin.
import { chromium } from "playwright-core";

export function launchChromium() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
}
