#!/usr/bin/env bash
# Loads the admin dashboard in headless Chromium while traffic runs, checks that its charts
# take new data points, that the figures move and that the miss-ratio curve is drawn with the
# measured hit ratio, and saves a screenshot (path printed last).
# Installs chromium (apt) and playwright-core (npm, into a scratch dir) when missing.
# scripts/test.sh runs it. Stops everything it started on exit.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
lib_init dashboard
"$root/scripts/deps.sh" chromium:chromium node:nodejs
nearcache_bin
scratch=${SCRATCH:-${TMPDIR:-/tmp}/nearcache-dashboard-npm}
shot=${SCREENSHOT:-$root/target/dashboard.png}
if [ ! -d "$scratch/node_modules/playwright-core" ]; then
    mkdir -p "$scratch"
    npm install --silent --prefix "$scratch" playwright-core >&2
fi
start_redis
start_nearcache --max-memory 32mb
rport=$redis_port pport=$nc_port admin=$nc_admin

# Traffic for the page to show: writes straight to Redis (invalidations), reads through the
# proxy on a key space larger than the cap (hits, misses, evictions). Bounded in count.
redis-benchmark -p "$rport" -t set -n 100000 -r 100000 -d 500 -q >/dev/null 2>&1
(
    for _ in $(seq 6); do
        redis-benchmark -p "$pport" -t get -n 60000 -r 100000 -c 10 -q >/dev/null 2>&1
        redis-benchmark -p "$rport" -t set -n 5000 -r 100000 -d 500 -q >/dev/null 2>&1
    done
) &
track $!

cat >"$work/check.js" <<'JS'
const { chromium } = require(process.env.PW);
(async () => {
  // A fresh profile directory each run (the persistent context is how playwright takes one).
  const browser = await chromium.launchPersistentContext(process.env.PROFILE_DIR, {
    executablePath: "/usr/bin/chromium",
    headless: true,
    viewport: { width: 1360, height: 860 },
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  await page.goto(`http://${process.env.ADMIN}/`);
  const count = () => page.evaluate(() => window.__nearcacheSamples || 0);
  const deadline = Date.now() + 30000;
  const first = await count();
  while ((await count()) < first + 8 && Date.now() < deadline) await page.waitForTimeout(250);
  const last = await page.evaluate(() => window.__nearcacheLast);
  const n = await count();
  const shown = await page.$eval("#samples", (e) => e.textContent);
  const mrcNow = await page.$eval("#mrc-now", (e) => e.textContent);
  await page.screenshot({ path: process.env.SHOT, fullPage: true });
  await browser.close();
  const problems = [];
  if (n < first + 8) problems.push(`only ${n - first} new samples in 30 s`);
  if (String(n) !== shown.trim()) problems.push(`DOM counter ${shown} != ${n}`);
  if (!last || !(last.rss > 0)) problems.push("no RSS figure");
  if (!last || !(last.hit + last.miss > 0)) problems.push("no reads per second while loading");
  if (!/^at 1x: estimated [0-9.]+ %, measured [0-9.]+ %$/.test(mrcNow))
    problems.push(`no miss-ratio curve: "${mrcNow}"`);
  if (errors.length) problems.push("page errors: " + errors.join("; "));
  console.log(JSON.stringify({ samples: n, last, mrc: mrcNow }, null, 1));
  if (problems.length) { console.error("FAIL: " + problems.join(", ")); process.exit(1); }
  console.log("dashboard ok");
})().catch((e) => { console.error(e); process.exit(1); });
JS
mkdir -p "$(dirname "$shot")"
PW="$scratch/node_modules/playwright-core" ADMIN="$admin" SHOT="$shot" \
    PROFILE_DIR="$work/chrome-profile" NO_PROXY="127.0.0.1" no_proxy="127.0.0.1" \
    node "$work/check.js"
echo "screenshot: $shot"
