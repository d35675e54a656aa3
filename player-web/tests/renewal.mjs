// A player that outlives its playback token, in Debian's Chromium with the web app's
// own player (hls.js). The server gives tokens a short life (LECTERN_PLAYBACK_TOKEN_TTL);
// once the first token has expired, the player still switches to a rung it has not
// loaded yet (a new playlist and new segments) and plays on, because it renewed its
// grant in time. Prints one JSON line; throws (exit 1) on a broken promise.
// Usage: node renewal.mjs BASE_URL SESSION_JSON LECTURE_ID TTL_SECS
import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';

const [base, sessionJson, lectureId, ttlText] = process.argv.slice(2);
const ttl = Number(ttlText);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required'],
});
const problems = [];
const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
await context.addInitScript((s) => localStorage.setItem('lectern.session', s), sessionJson);
const page = await context.newPage();
page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
// Every answer to a playback URL, and when it came.
const answers = [];
page.on('response', (r) => {
  if (r.url().includes('/play/')) answers.push({ at: Date.now(), status: r.status(), token: r.url().split('/play/')[1].split('/')[0], file: r.url().split('/').slice(-2).join('/') });
});

const loaded = Date.now();
await page.goto(`${base}/#/watch/${lectureId}`);
await page.locator('video').waitFor();
await page.waitForFunction(() => window.lecternPlayer?.hls?.levels?.length > 0, null, { timeout: 30_000 });
const first = await page.evaluate(() => window.lecternPlayer.hls.url);
await page.evaluate(() => {
  window.hlsErrors = [];
  window.lecternPlayer.hls.on('hlsError', (_, d) => window.hlsErrors.push(`${d.details}${d.fatal ? ' (fatal)' : ''} ${d.response?.code ?? ''}`));
  document.querySelector('video').play().catch(() => {});
});
await page.waitForFunction(() => document.querySelector('video').currentTime > 1, null, { timeout: 30_000 });

// Past the first token's life, with a margin for the clock's second.
await page.waitForTimeout(Math.max(0, loaded + (ttl + 3) * 1000 - Date.now()));
const expiredAt = Date.now();
const firstNow = (await fetch(first)).status;
assert.equal(firstNow, 403, `the first token still opens the master playlist (${firstNow}): the test proves nothing`);

// A rung whose playlist the player has not loaded: an immediate switch fetches it and
// its segments now.
const target = await page.evaluate(() => {
  const hls = window.lecternPlayer.hls;
  const i = hls.levels.findIndex((l, i) => i !== hls.currentLevel && !l.details);
  hls.currentLevel = i;
  return i;
});
assert.ok(target >= 0, 'every rung was loaded already');
const switchedFrom = await page.evaluate(() => document.querySelector('video').currentTime);
try {
  await page.waitForFunction(({ target, from }) => {
    const hls = window.lecternPlayer.hls;
    const v = document.querySelector('video');
    return hls.currentLevel === target && hls.levels[target].details && v.currentTime > from + 2;
  }, { target, from: switchedFrom }, { timeout: 30_000, polling: 100 });
} catch (e) {
  const errors = await page.evaluate(() => window.hlsErrors);
  throw new Error(`no switch to rung ${target} after the first token expired: ${e.message} ${JSON.stringify({ errors, answers: answers.slice(-8) })}`);
}
const errors = await page.evaluate(() => window.hlsErrors);
await browser.close();
const after = answers.filter((a) => a.at >= expiredAt);
console.log(JSON.stringify({
  ok: problems.length === 0,
  firstNow,
  target,
  after: after.map(({ status, file, token }) => ({ status, file, renewed: token !== first.split('/play/')[1].split('/')[0] })),
  errors,
  problems,
}));
