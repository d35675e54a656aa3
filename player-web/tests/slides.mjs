// Proposed chapters, in Debian's Chromium: the owner's studio lists the slides the
// lecture's slides job found (thumbnail, time, the title read, a hint) without a reload,
// the owner renames the first, unticks the last, merges one and takes it back, sees a
// refusal shown as text, then publishes; the chapters editor shows what was published
// and Dismiss hides the panel for good in this browser. An enrolled student then sees
// the chapters on the seek bar (marks, named on hover) and in the chapter list.
// Prints one JSON line; throws (exit 1) on a broken promise.
// Usage: node slides.mjs BASE_URL OWNER_SESSION_JSON STUDENT_SESSION_JSON COURSE_ID LECTURE_ID ARTIFACTS_DIR
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';
import assert from 'node:assert/strict';

const [base, ownerSession, studentSession, courseId, lectureId, artifacts] = process.argv.slice(2);
fs.mkdirSync(artifacts, { recursive: true });
const shot = (page, name) => page.screenshot({ path: path.join(artifacts, `${name}.png`), fullPage: true });
const mmss = (s) => `${Math.floor(s / 60)}:${String(Math.floor(s % 60)).padStart(2, '0')}`;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required'],
});
const problems = [];

/** A page signed in as `session` (the JSON the app keeps in localStorage). */
async function signedIn(session) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  await context.addInitScript((s) => localStorage.setItem('lectern.session', s), session);
  const page = await context.newPage();
  page.on('console', (m) => {
    // The refusal the flow makes up below is logged by Chromium as a failed load.
    if (m.type() === 'error' && !m.text().includes('status of 422')) problems.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  return page;
}

/** GET an API path as the page's user. */
const apiGet = (page, url) => page.evaluate(async (u) => {
  const { token } = JSON.parse(localStorage.getItem('lectern.session'));
  const r = await fetch(u, { headers: { Authorization: `Bearer ${token}` } });
  return { status: r.status, body: await r.json() };
}, url);

try {
  // --- the owner ----------------------------------------------------------------------
  const owner = await signedIn(ownerSession);
  await owner.goto(`${base}/#/studio/courses/${courseId}`);
  const row = owner.locator(`.lecture-row[data-lecture="${lectureId}"]`);
  await row.locator('.badge.ready').waitFor({ timeout: 240_000 });
  const panel = row.locator('details.slides-panel');
  await panel.waitFor();
  // The slides job runs after the lecture is ready: the panel fills in on its live
  // event, with no reload.
  const sawNoneYet = (await panel.locator('li.slide').count()) === 0;
  const rows = panel.locator('li.slide');
  await rows.first().waitFor({ timeout: 240_000 });
  const slides = (await apiGet(owner, `/api/lectures/${lectureId}/slides`)).body;
  assert.ok(slides.length >= 3, `only ${slides.length} slides found`);
  assert.equal(await rows.count(), slides.length);
  assert.equal(await panel.getAttribute('open'), '', 'the panel opens while nothing is published');
  assert.equal((await panel.locator('summary').textContent()).trim(), `Proposed chapters (${slides.length})`);

  // Each row: the read title (or none, unticked), the time, the thumbnail (fetched with
  // the owner's token, shown from a blob: URL).
  for (const [i, s] of slides.entries()) {
    const r = rows.nth(i);
    assert.equal(await r.getByLabel(`Title of slide ${i + 1}`, { exact: true }).inputValue(), s.title ?? '');
    assert.equal(await r.getByRole('checkbox', { name: 'Use', exact: true }).isChecked(), !!s.title);
    assert.equal((await r.locator('.time').textContent()).trim(), mmss(s.start_secs));
  }
  assert.ok(await rows.first().getByRole('button', { name: 'Merge into previous', exact: true }).isDisabled());
  await owner.waitForFunction(() => {
    const imgs = [...document.querySelectorAll('.slides-panel img.slide-thumb')];
    return imgs.length > 0 && imgs.every((img) => img.complete && img.naturalWidth === 320 && img.src.startsWith('blob:'));
  }, null, { timeout: 30_000 });
  const titled = slides.filter((s) => s.title).length;
  const chapterCount = (n) => `${n} chapter${n === 1 ? '' : 's'}`;
  const publish = (n) => panel.getByRole('button', { name: `Publish ${chapterCount(n)}`, exact: true });
  await publish(titled).waitFor();
  await shot(owner, 'studio-proposed-chapters');

  // The edits: the first renamed (and used), the last unticked.
  const last = slides.length - 1;
  await rows.nth(0).getByLabel('Title of slide 1', { exact: true }).fill('Sampling');
  await rows.nth(0).getByRole('checkbox', { name: 'Use', exact: true }).check();
  await rows.nth(last).getByRole('checkbox', { name: 'Use', exact: true }).uncheck();
  // The first slide, found a frame or two in, starts the lecture.
  const expected = slides
    .map((s, i) => ({ start_secs: i === 0 && s.start_secs < 1 ? 0 : s.start_secs, title: i === 0 ? 'Sampling' : s.title, use: i === 0 || (i < last && !!s.title) }))
    .filter((c) => c.use)
    .map(({ start_secs, title }) => ({ start_secs, title }));
  await publish(expected.length).waitFor();

  // A merge drops the slide's start (one chapter fewer) and keeps the focus on its row;
  // undone, all is as it was.
  const second = rows.nth(1);
  await second.getByRole('button', { name: 'Merge into previous', exact: true }).click();
  await rows.nth(1).and(owner.locator('[data-merged]')).waitFor();
  await publish(expected.length - (slides[1].title ? 1 : 0)).waitFor();
  assert.equal(await owner.evaluate(() => document.activeElement?.textContent), 'Undo merge');
  assert.ok(await rows.nth(1).getByLabel('Title of slide 2', { exact: true }).isDisabled());
  await rows.nth(1).getByRole('button', { name: 'Undo merge', exact: true }).click();
  await publish(expected.length).waitFor();
  assert.equal(await rows.nth(0).getByLabel('Title of slide 1', { exact: true }).inputValue(), 'Sampling');

  // A refusal is shown as the server's message, as text (made up here: the edits above
  // cannot be refused).
  const refusal = 'chapter 2: <b>title</b> is too long';
  await owner.route(`**/api/lectures/${lectureId}/chapters`, (route) => (route.request().method() === 'PUT'
    ? route.fulfill({ status: 422, contentType: 'application/json', body: JSON.stringify({ error: { code: 'invalid', message: refusal } }) })
    : route.continue()));
  await publish(expected.length).click();
  await panel.getByRole('alert').filter({ hasText: refusal }).waitFor();
  assert.equal(await panel.locator('.error b').count(), 0);
  await owner.unrouteAll();

  await publish(expected.length).click();
  await panel.getByRole('status').filter({ hasText: `Published ${chapterCount(expected.length)}` }).waitFor();
  assert.equal((await panel.locator('p.error').textContent()).trim(), '');
  const published = (await apiGet(owner, `/api/lectures/${lectureId}/chapters`)).body;
  assert.deepEqual(published.map((c) => c.title), expected.map((c) => c.title));
  published.forEach((c, i) => assert.ok(Math.abs(c.start_secs - expected[i].start_secs) < 0.01, JSON.stringify({ published, expected })));
  // The chapters editor beside it shows them, without a reload.
  const editor = row.locator('details.chapters-editor');
  await editor.locator('summary', { hasText: `Chapters (${expected.length})` }).waitFor();
  assert.equal(
    await editor.getByLabel(/Chapters, one per line/).inputValue(),
    expected.map((c) => `${mmss(c.start_secs)} ${c.title}`).join('\n'),
  );
  await panel.getByText(`Publishing replaces the ${chapterCount(expected.length)} published now.`).waitFor();

  // Dismissed, the panel is gone from this browser, also after a reload.
  await panel.getByRole('button', { name: 'Dismiss', exact: true }).click();
  await panel.waitFor({ state: 'hidden' });
  await owner.reload();
  await row.locator('details.chapters-editor summary', { hasText: `Chapters (${expected.length})` }).waitFor();
  assert.equal(await row.locator('details.slides-panel').count(), 0);

  // --- an enrolled student ------------------------------------------------------------
  const student = await signedIn(studentSession);
  await student.goto(`${base}/#/watch/${lectureId}`);
  await student.locator('video').waitFor();
  await student.waitForFunction(() => document.querySelector('video').readyState >= 1 && document.querySelector('video').duration > 0, null, { timeout: 30_000 });
  const later = expected.filter((c) => c.start_secs > 0);
  const marks = student.locator('.seekwrap .chapter-marks .chapter-mark');
  await student.waitForFunction((n) => document.querySelectorAll('.seekwrap .chapter-marks .chapter-mark').length === n, later.length);
  const duration = await student.evaluate(() => document.querySelector('video').duration);
  const shown = await marks.evaluateAll((els) => els.map((el) => ({ title: el.title, left: parseFloat(el.style.left) })));
  assert.deepEqual(shown.map((m) => m.title), later.map((c) => c.title));
  // Placed by the lecture's duration; the media's own may differ by a frame or two.
  shown.forEach((m, i) => assert.ok(Math.abs(m.left - (100 * later[i].start_secs) / duration) < 1, JSON.stringify({ shown, later, duration })));
  const list = student.getByRole('navigation', { name: 'Chapters', exact: true });
  assert.deepEqual(
    (await list.locator('li').allTextContents()).map((t) => t.trim()),
    expected.map((c) => `${mmss(c.start_secs)} ${c.title}`),
  );
  // Hovering the seek bar inside a chapter names it.
  const k = Math.min(2, expected.length - 1);
  const end = expected[k + 1]?.start_secs ?? duration;
  const box = await student.locator('input.seek').boundingBox();
  await student.mouse.move(box.x + (box.width * (expected[k].start_secs + end) / 2) / duration, box.y + box.height / 2);
  await student.locator('.thumb.show .thumb-chapter', { hasText: expected[k].title }).waitFor();
  await shot(student, 'student-chapters-from-slides');

  assert.deepEqual(problems, []);
  console.log(JSON.stringify({ ok: true, sawNoneYet, slides: slides.length, published: published.map((c) => c.title) }));
} finally {
  await browser.close();
}
