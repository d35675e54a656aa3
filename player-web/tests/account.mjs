// The account pages a mail links to, in Debian's Chromium: asking for a reset link
// from the sign-in page, choosing a new password on the reset page, confirming an
// address on the verify page. Looked up by accessible names. Prints one JSON line;
// throws (exit 1) on a broken promise.
// Usage: node account.mjs forgot BASE EMAIL | reset URL PASSWORD | verify URL
import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';

const [step, ...args] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
});
const problems = [];
const page = await browser.newPage();
page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
try {
  if (step === 'forgot') {
    const [base, email] = args;
    await page.goto(`${base}/#/login`);
    await page.getByRole('link', { name: 'Forgot password?', exact: true }).click();
    await page.getByLabel('Email', { exact: true }).fill(email);
    await page.getByRole('button', { name: 'Send me a link', exact: true }).click();
    await page.getByRole('status').filter({ hasText: 'The link works once' }).waitFor();
  } else if (step === 'reset') {
    const [url, password] = args;
    await page.goto(url);
    await page.getByLabel('New password (at least 8 characters)', { exact: true }).fill(password);
    await page.getByLabel('The same again', { exact: true }).fill(`${password}!`);
    await page.getByRole('button', { name: 'Set password', exact: true }).click();
    await page.getByRole('alert').filter({ hasText: 'The two passwords differ.' }).waitFor();
    await page.getByLabel('The same again', { exact: true }).fill(password);
    await page.getByRole('button', { name: 'Set password', exact: true }).click();
    // The answer, not the page's own sign-in link (there from the start).
    await page.getByRole('status').filter({ hasText: 'Sign in with your new password.' }).waitFor();
  } else if (step === 'verify') {
    const [url] = args;
    await page.goto(url);
    await page.getByRole('status').filter({ hasText: 'is confirmed' }).waitFor();
  } else {
    throw new Error(`unknown step ${step}`);
  }
  assert.deepEqual(problems, []);
  console.log(JSON.stringify({ ok: true, step }));
} finally {
  await browser.close();
}
