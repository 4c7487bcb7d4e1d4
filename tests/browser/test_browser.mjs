// The dashboard (/ui/) in a real headless Chromium (Debian's `chromium`), driven by puppeteer-core,
// against the real binary (`metaserve serve`, SQLite in a temporary directory, a free port):
//   1. every page loads with no console error, no uncaught exception, no failed request and no
//      HTTP error status, at 1280x800 and at phone width (390x844, no horizontal scrolling);
//   1a. the model page sets an alias (seen through the API) and exports weights; the datasets page
//      uploads a JSON file (stored, listed) and, for a file the API refuses, shows its detail;
//   2. a job started from the Jobs page: its loss curve gains points while it trains (the chart's
//      data-points counts grow between two progress writes), then "Cancel job" cancels it;
//   3. the regression page: ten clicks on the canvas, "Adapt"; the drawn adapted curve's sample
//      points (the canvas's data-curve-x / data-curve-y) equal the API's predictions at those x
//      (POST /v1/models/{ref}/predict with the same support set and steps, called from here), at
//      the last inner step and, moving the slider, at step 0 (the meta-parameters);
//   4. the classification page: example rows, "Adapt and classify"; the labels shown equal the
//      API's for the same rows;
//   5. a server with an API key: the page asks for the key once, a wrong key is refused with the
//      problem's detail and asked for again, the right one loads the page and is kept in
//      sessionStorage.
// Screenshots of each page go to METASERVE_ARTEFACTS (default: ./browser-artefacts); with
// METASERVE_UPDATE_DOCS_IMG=1 they are also copied to docs/img/ (the README's pictures).
//
// Environment: METASERVE_BIN (the binary), METASERVE_SRC (the source tree), CHROMIUM (default
// /usr/bin/chromium). Prints "N passed, M failed"; the exit status is non-zero on any failure.
import { spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import puppeteer from 'puppeteer-core';

const SRC = process.env.METASERVE_SRC || new URL('../..', import.meta.url).pathname;
const BIN = process.env.METASERVE_BIN || join(SRC, 'build/metaserve');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ART = process.env.METASERVE_ARTEFACTS || join(process.cwd(), 'browser-artefacts');
const WAIT_MS = 45000; // only to fail instead of hanging; nothing is asserted on time
// The page and this test ask the same server for the same float32 computation; the page's
// request also holds the support x (a batch of 111 rows, ours 101), and OpenBLAS may block a
// product differently by batch size, so float32 rounding may differ in the last bits: 1e-5
// (relative to max(1, |y|)) admits that and is far below what one inner step changes (~1e-2).
const TOL = 1e-5;

let passed = 0, failed = 0;
function check(ok, what, detail = '') {
    if (ok) passed++, console.log(`ok   ${what}`);
    else failed++, console.log(`FAIL ${what}${detail ? ': ' + detail : ''}`);
    return ok;
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
mkdirSync(ART, { recursive: true });
const shots = [];

/* ---- servers ---- */

const tmp = mkdtempSync(join(tmpdir(), 'browser.'));
const servers = [];
async function startServer(name, extraEnv = {}) {
    const env = { ...process.env, METASERVE_DB: join(tmp, `${name}.db`), METASERVE_PORT: '0',
                  METASERVE_LISTEN: '127.0.0.1', METASERVE_WORKERS: '2', ...extraEnv };
    const proc = spawn(BIN, ['serve'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    servers.push(proc);
    const port = await new Promise((resolve, reject) => {
        let buf = '';
        const timer = setTimeout(() => reject(new Error('no "listening" line in 20 s')), 20000);
        proc.stderr.on('data', (d) => {
            buf += d;
            const m = buf.match(/"msg":"listening".*"port":(\d+)/);
            if (m) clearTimeout(timer), resolve(+m[1]);
        });
        proc.on('exit', (c) => reject(new Error(`server exited (${c}) before listening:\n${buf}`)));
    });
    proc.stderr.resume();
    return `http://127.0.0.1:${port}`;
}

async function call(base, method, path, body, key) {
    const headers = body === undefined ? {} : { 'Content-Type': 'application/json' };
    if (key) headers.Authorization = `Bearer ${key}`;
    const res = await fetch(base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const json = await res.json().catch(() => null);
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
    return json;
}

async function waitJob(base, id) {
    for (const t0 = Date.now(); Date.now() - t0 < WAIT_MS; await sleep(200)) {
        const j = await call(base, 'GET', `/v1/jobs/${id}`);
        if (['succeeded', 'failed', 'cancelled'].includes(j.state)) return j;
    }
    throw new Error(`job ${id} did not finish`);
}

const SINE = (name, iterations) => ({
    name, architecture: { sizes: [1, 40, 40, 1], activation: 'relu', head: 'regression' },
    algorithm: 'maml', inner: { lr: 0.01, steps: 1 }, outer: { optimizer: 'adam', lr: 0.001 },
    meta_batch: 10, iterations, seed: 1, tasks: { family: 'sinusoid', k_support: 10, k_query: 10 },
});

/* ---- the browser, and what a page must not do ---- */

const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true, // Chromium's new headless mode (--headless=new)
    args: [...(process.getuid && process.getuid() === 0 ? ['--no-sandbox'] : []), '--disable-gpu',
           '--no-first-run', '--disable-dev-shm-usage'],
});

/** A new page (in its own browser context: its own sessionStorage) that records problems. */
async function newPage(width = 1280, height = 800) {
    const ctx = await browser.createBrowserContext();
    const page = await ctx.newPage();
    await page.setViewport({ width, height });
    page.problems = [];
    page.allowStatus = new Set();
    page.on('console', (m) => {
        if (m.type() !== 'error') return;
        // Chromium reports every HTTP error status of a fetch on the console; the statuses a
        // step expects (401 in the key prompt) are accounted for by the response handler below
        const status = /status of (\d+)/.exec(m.text());
        if (status && page.allowStatus.has(+status[1])) return;
        page.problems.push(`console: ${m.text()}`);
    });
    page.on('pageerror', (e) => page.problems.push(`exception: ${e.message}`));
    page.on('requestfailed', (r) => {
        // a stream the page itself closes when it leaves a job page is aborted, not failed
        if (r.failure() && r.failure().errorText === 'net::ERR_ABORTED' && r.url().endsWith('/events')) return;
        page.problems.push(`request failed: ${r.url()} ${r.failure() && r.failure().errorText}`);
    });
    page.on('response', (r) => {
        if (r.status() >= 400 && !page.allowStatus.has(r.status()))
            page.problems.push(`HTTP ${r.status()}: ${r.request().method()} ${r.url()}`);
    });
    return page;
}

/** Goes to a hash route and waits until the page has rendered it (body[data-ready] changes). */
async function show(page, base, hash) {
    const before = await page.evaluate(() => document.body && document.body.dataset.ready).catch(() => undefined);
    if (page.url().startsWith(base + '/ui/')) await page.evaluate((h) => { location.hash = h; }, hash);
    else await page.goto(`${base}/ui/${hash}`, { waitUntil: 'load' });
    await page.waitForFunction((b) => document.body.dataset.ready && document.body.dataset.ready !== b,
                               { timeout: WAIT_MS }, before);
}

async function shot(page, name) {
    const file = join(ART, `${name}.png`);
    await page.screenshot({ path: file });
    shots.push(file);
}

function noProblems(page, what) {
    check(page.problems.length === 0, `${what}: no console error, exception or failed request`,
          page.problems.join('\n     '));
    page.problems.length = 0;
}

const errorShown = (page) => page.$eval('#error', (e) => (e.hidden ? '' : e.textContent));

/* ---- the run ---- */

try {
    const base = await startServer('open');

    // what the pages show: a dataset, a regression and a classification model
    await call(base, 'POST', '/v1/datasets', { name: 'lines', kind: 'tasks', tasks: [
        { x: [[0], [1], [2]], y: [[0], [2], [4]] }, { x: [[0], [1]], y: [[1], [0]] }] });
    const sineJob = await call(base, 'POST', '/v1/jobs', SINE('sine', 1500));
    const clsJob = await call(base, 'POST', '/v1/jobs', {
        name: 'clusters', architecture: { sizes: [2, 32, 3], activation: 'tanh', head: 'classification' },
        algorithm: 'maml', inner: { lr: 0.1, steps: 1 }, meta_batch: 8, iterations: 300,
        tasks: { family: 'gaussian', n_way: 3, dim: 2, k_support: 2, k_query: 5 } });
    const fomamlJob = await call(base, 'POST', '/v1/jobs', { ...SINE('sine-fomaml', 1500), algorithm: 'fomaml' });
    check((await waitJob(base, sineJob.id)).state === 'succeeded', 'the sinusoid model trains');
    check((await waitJob(base, fomamlJob.id)).state === 'succeeded', 'a second sinusoid model (FOMAML) trains');
    check((await waitJob(base, clsJob.id)).state === 'succeeded', 'the classification model trains');
    await call(base, 'PUT', '/v1/models/sine/aliases/prod', { version: 1 });

    /* 1. every page, at 1280x800 */
    const page = await newPage();
    const pages = [
        ['#/models', 'models', 'table td a[href="#/models/sine"]'],
        ['#/models/sine', 'model', 'button[aria-label^="Export"]'],
        ['#/jobs', 'jobs', '#job-start'],
        [`#/jobs/${sineJob.id}`, 'job', '#loss-chart polyline'],
        [`#/compare/${sineJob.id},${fomamlJob.id}`, 'compare', '#compare-chart polyline'],
        ['#/datasets', 'datasets', '#dataset-upload'],
        ['#/try/regression', 'try-regression', '#pad'],
        ['#/try/classification', 'try-classification', '#cls-adapt'],
    ];
    for (const [hash, name, sel] of pages) {
        await show(page, base, hash);
        check(!!(await page.$(sel)), `${name} page (${hash}) shows ${sel}`);
        check((await errorShown(page)) === '', `${name} page shows no error`, await errorShown(page));
        if (name === 'compare') {
            // one curve per job, each with every validation point the API has for it
            const drawnCounts = Object.values(JSON.parse(await page.$eval('#compare-chart', (e) => e.getAttribute('data-points'))));
            const apiCounts = [];
            for (const id of [sineJob.id, fomamlJob.id])
                apiCounts.push((await call(base, 'GET', `/v1/jobs/${id}/metrics?page_size=1000`)).points.filter((p) => p.key === 'val_mse').length);
            check((await page.$$('#compare-chart polyline')).length === 2 && JSON.stringify(drawnCounts) === JSON.stringify(apiCounts),
                  'the compare page overlays both jobs\' validation curves, every point', `${drawnCounts} drawn, ${apiCounts} recorded`);
        }
        await shot(page, name);
        noProblems(page, `${name} page`);
    }
    await show(page, base, '#/models/sine');
    const row = await page.$eval('tbody tr', (tr) => tr.innerText);
    check(row.includes('prod') && row.includes('1–40–40–1 relu regression') && row.includes('maml'),
          'the model page shows the alias, architecture and algorithm of version 1', row);

    // an alias set from the page: PUT /v1/models/sine/aliases/canary, seen through the API
    check(!('canary' in (await call(base, 'GET', '/v1/models/sine')).aliases), 'no alias canary before');
    await page.$eval('#alias-name', (e) => { e.value = 'canary'; });
    await page.select('#alias-version', '1');
    await page.click('#alias-set');
    await page.waitForFunction(() => document.querySelector('#alias-status') &&
                               document.querySelector('#alias-status').textContent.includes('canary'), { timeout: WAIT_MS });
    const m = await call(base, 'GET', '/v1/models/sine');
    check(m.aliases.canary === 1, '"Set alias" points canary at version 1', JSON.stringify(m.aliases));
    noProblems(page, 'moving an alias');
    // weights export: the page fetches GET /v1/models/sine@1/weights and offers it as a file
    const weightsSeen = page.waitForResponse((r) => r.url().endsWith('/v1/models/sine@1/weights') && r.status() === 200,
                                             { timeout: WAIT_MS });
    await page.click('button[aria-label="Export the weights of version 1"]');
    check(!!(await weightsSeen), '"Export weights" fetches the version\'s weights');
    noProblems(page, 'exporting weights');

    // a dataset uploaded from a file; then a bad one, whose problem detail the page shows
    await show(page, base, '#/datasets');
    const good = join(tmp, 'waves.json'), bad = join(tmp, 'bad.json');
    writeFileSync(good, JSON.stringify({ name: 'waves', kind: 'tasks', tasks: [
        { x: [[0], [1]], y: [[0], [1]] }, { x: [[0], [1], [2]], y: [[1], [0], [1]] }, { x: [[3], [4]], y: [[2], [2]] }] }));
    writeFileSync(bad, JSON.stringify({ name: 'bad', kind: 'tasks', tasks: [{ x: [[0]], y: [[0], [1]] }] }));
    await (await page.$('#dataset-file')).uploadFile(good);
    await page.click('#dataset-upload');
    await page.waitForFunction(() => /uploaded waves/.test((document.querySelector('#dataset-status') || {}).textContent || ''),
                               { timeout: WAIT_MS });
    const listed = (await call(base, 'GET', '/v1/datasets')).datasets.find((d) => d.name === 'waves');
    check(listed && listed.n_tasks === 3, 'a dataset uploaded from the page is stored with its 3 tasks', JSON.stringify(listed));
    check((await page.$eval('main table', (t) => t.innerText)).includes('3 tasks'), 'the list shows the new dataset\'s tasks');
    noProblems(page, 'uploading a dataset');
    page.allowStatus.add(422);
    const refused = await fetch(`${base}/v1/datasets`, { method: 'POST', headers: { 'Content-Type': 'application/json' },
                                                          body: JSON.stringify({ name: 'bad', kind: 'tasks', tasks: [{ x: [[0]], y: [[0], [1]] }] }) });
    const detail = (await refused.json()).detail;
    await (await page.$('#dataset-file')).uploadFile(bad);
    await page.click('#dataset-upload');
    await page.waitForFunction(() => !document.querySelector('#error').hidden, { timeout: WAIT_MS });
    const shownError = await errorShown(page);
    check(refused.status === 422 && shownError.includes(detail), 'a refused upload shows the problem\'s detail', `${shownError} / ${detail}`);
    await shot(page, 'datasets-error');
    page.allowStatus.delete(422);
    noProblems(page, 'a refused upload');

    /* 2. a job started from the Jobs page, watched while it trains, then cancelled */
    await show(page, base, '#/jobs');
    await page.$eval('#job-config', (e, cfg) => { e.value = cfg; }, JSON.stringify(SINE('sine-live', 100000)));
    const before = await page.evaluate(() => document.body.dataset.ready);
    await page.click('#job-start');
    await page.waitForFunction((b) => location.hash.startsWith('#/jobs/') && document.body.dataset.ready !== b,
                               { timeout: WAIT_MS }, before);
    const liveId = (await page.evaluate(() => location.hash)).slice('#/jobs/'.length);
    const counts = async () => JSON.parse((await page.$eval('#loss-chart', (e) => e.getAttribute('data-points'))) || '{}');
    await page.waitForFunction(() => {
        const c = JSON.parse(document.querySelector('#loss-chart').getAttribute('data-points') || '{}');
        return c.val_mse >= 1;
    }, { timeout: WAIT_MS });
    const c1 = await counts();
    // both curves grow (a meta-loss point is kept every iterations/500 + 1 iterations, so on a
    // slow machine one progress write may bring none: wait for both, with no reload)
    await page.waitForFunction((n) => {
        const c = JSON.parse(document.querySelector('#loss-chart').getAttribute('data-points') || '{}');
        return c.val_mse > n.val_mse && c.meta_loss > n.meta_loss;
    }, { timeout: WAIT_MS }, c1);
    const c2 = await counts();
    check(c2.val_mse > c1.val_mse && c2.meta_loss > c1.meta_loss,
          'the live job page gains curve points while the job trains (no reload)', `${JSON.stringify(c1)} -> ${JSON.stringify(c2)}`);
    const live = await call(base, 'GET', `/v1/jobs/${liveId}`);
    check(live.state === 'running', 'the job is still running while the curve grows', live.state);
    const points = await call(base, 'GET', `/v1/jobs/${liveId}/metrics?page_size=1000`);
    const apiVal = points.points.filter((p) => p.key === 'val_mse').length;
    check(apiVal >= c2.val_mse, 'the curve shows points the API has recorded', `${apiVal} recorded, ${c2.val_mse} drawn`);
    const stats = await page.$eval('#job-stats', (e) => e.innerText);
    check(/\d\S*\s*\ntasks\/s/.test(stats) && /\d (s|min|h)\S*\s*\nETA/.test(stats), 'the job page shows tasks/s and an ETA', stats);
    await shot(page, 'job-live');
    await page.click('#job-cancel');
    const cancelled = await waitJob(base, liveId);
    check(cancelled.state === 'cancelled', '"Cancel job" cancels the running job', cancelled.state);
    await page.waitForFunction(() => document.querySelector('.state-cancelled'), { timeout: WAIT_MS });
    noProblems(page, 'the live job page');

    /* 3. ten clicks, adapt, and the drawn curve equals the API's predictions */
    await show(page, base, '#/try/regression');
    await page.select('#reg-model', 'sine@1');
    const box = await (await page.$('#pad')).boundingBox();
    for (let i = 0; i < 10; i++) {
        const x = -4.5 + i; // the canvas spans x in [-5, 5], y in [-6, 6]
        const y = 2 * Math.sin(x - 0.5);
        await page.mouse.click(box.x + ((x + 5) / 10) * box.width, box.y + ((6 - y) / 12) * box.height);
    }
    const support = JSON.parse(await page.$eval('#pad', (e) => e.dataset.support));
    check(support.length === 10 && support.every(([x, y], i) =>
        Math.abs(x - (-4.5 + i)) < 0.05 && Math.abs(y - 2 * Math.sin(-5 + i)) < 0.1),
          'ten clicks place ten support points where they were clicked', JSON.stringify(support));
    await page.click('#reg-adapt');
    await page.waitForFunction(() => document.querySelector('#pad').dataset.curveY, { timeout: WAIT_MS });
    const drawn = await page.$eval('#pad', (e) => ({ xs: JSON.parse(e.dataset.curveX), ys: JSON.parse(e.dataset.curveY),
                                                      step: +e.dataset.step, model: e.dataset.model }));
    const K = +(await page.$eval('#reg-steps', (e) => e.value));
    check(drawn.step === K && drawn.xs.length >= 50 && drawn.ys.length === drawn.xs.length && drawn.model === 'sine@1',
          `the adapted curve is drawn at step ${K} with its sample points exposed`, JSON.stringify({ ...drawn, xs: drawn.xs.length, ys: drawn.ys.length }));
    const sup = { x: support.map((p) => [p[0]]), y: support.map((p) => [p[1]]) };
    // (steps 0: the meta-parameters, asked without a support set, which the API refuses with 0)
    const predict = (steps) => call(base, 'POST', '/v1/models/sine@1/predict',
                                    steps ? { x: drawn.xs.map((v) => [v]), support: sup, steps } : { x: drawn.xs.map((v) => [v]) });
    const diff = (a, b) => Math.max(...a.map((v, i) => Math.abs(v - b[i]) / Math.max(1, Math.abs(b[i]))));
    const atK = (await predict(K)).y.map((r) => r[0]);
    check(diff(drawn.ys, atK) <= TOL, `the drawn adapted curve equals the API's predictions at its ${drawn.xs.length} x`,
          `max relative difference ${diff(drawn.ys, atK)}`);
    const at0 = (await predict(0)).y.map((r) => r[0]);
    check(diff(atK, at0) > 1e-3, 'adapting changed the curve (the comparison can tell curves apart)', `${diff(atK, at0)}`);
    await page.$eval('#reg-slider', (e) => { e.value = '0'; e.dispatchEvent(new Event('input')); });
    const drawn0 = await page.$eval('#pad', (e) => ({ ys: JSON.parse(e.dataset.curveY), step: +e.dataset.step }));
    check(drawn0.step === 0 && diff(drawn0.ys, at0) <= TOL, 'at slider step 0 the drawn curve is the meta-parameters\' prediction',
          `step ${drawn0.step}, max relative difference ${diff(drawn0.ys, at0)}`);
    const lossPts = JSON.parse(await page.$eval('#reg-loss', (e) => e.getAttribute('data-points')));
    check(lossPts.support_loss === K + 1, `the support loss is drawn for steps 0..${K}`, JSON.stringify(lossPts));
    const summary = await page.$eval('#reg-summary', (e) => e.textContent);
    check(/support loss .* → /.test(summary), 'the adaptation\'s support loss before and after is shown', summary);
    await page.$eval('#reg-slider', (e) => { e.value = e.max; e.dispatchEvent(new Event('input')); });
    await shot(page, 'try-regression-adapted');
    noProblems(page, 'the regression page');

    /* 4. classification: the labels shown are the API's */
    await show(page, base, '#/try/classification');
    await page.click('#cls-example');
    await page.click('#cls-adapt');
    await page.waitForSelector('#cls-result tbody tr', { timeout: WAIT_MS });
    const rowsOf = (t) => t.trim().split('\n').map((l) => l.split(/[\s,]+/).map(Number));
    const supRows = rowsOf(await page.$eval('#cls-support', (e) => e.value));
    const qRows = rowsOf(await page.$eval('#cls-query', (e) => e.value));
    const shown = await page.$$eval('#cls-result td[data-label]', (tds) => tds.map((td) => +td.dataset.label));
    const want = await call(base, 'POST', '/v1/models/clusters/predict', {
        x: qRows, steps: 5, support: { x: supRows.map((r) => r.slice(0, 2)), y: supRows.map((r) => [r[2]]) } });
    check(JSON.stringify(shown) === JSON.stringify(want.labels), 'the classification page shows the API\'s labels',
          `${JSON.stringify(shown)} vs ${JSON.stringify(want.labels)}`);
    await shot(page, 'try-classification-adapted');
    noProblems(page, 'the classification page');

    /* 1b. phone width: every main page, no horizontal scrolling */
    const phone = await newPage(390, 844);
    for (const [hash, name] of [['#/jobs', 'jobs'], [`#/jobs/${sineJob.id}`, 'job'], ['#/try/regression', 'try-regression'],
                                ['#/models/sine', 'model']]) {
        await show(phone, base, hash);
        const wide = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
        check(wide <= 0, `${name} page fits a 390 px wide screen`, `${wide} px too wide`);
        if (name === 'try-regression') {
            // the canvas from the keyboard: focus, move the cross-hair right by 1, Enter places a point
            await phone.focus('#pad');
            for (let i = 0; i < 4; i++) await phone.keyboard.press('ArrowRight');
            await phone.keyboard.press('Enter');
            const placed = JSON.parse(await phone.$eval('#pad', (e) => e.dataset.support));
            check(placed.length === 1 && placed[0][0] === 1 && placed[0][1] === 0,
                  'arrow keys and Enter place a support point from the keyboard', JSON.stringify(placed));
        }
        await shot(phone, `phone-${name}`);
        noProblems(phone, `${name} page at phone width`);
    }

    /* 5. a server with keys: the prompt */
    const KEY = 'browser-test-admin-key-0123';
    const keyed = await startServer('keyed', { METASERVE_API_KEYS: `admin:${KEY}` });
    const kp = await newPage();
    kp.allowStatus.add(401);
    await kp.goto(`${keyed}/ui/#/models`);
    await kp.waitForSelector('#key-dialog[open]', { timeout: WAIT_MS });
    check(/API key is required/.test(await kp.$eval('#key-why', (e) => e.textContent)),
          'a 401 opens the key prompt with the problem\'s detail', await kp.$eval('#key-why', (e) => e.textContent));
    await shot(kp, 'key-prompt');
    await kp.type('#key-input', 'not-the-key-0000000000');
    await kp.click('#key-ok');
    await kp.waitForFunction(() => /not valid/.test(document.querySelector('#key-why').textContent) &&
                             document.querySelector('#key-dialog').open, { timeout: WAIT_MS });
    check(true, 'a wrong key is refused and the prompt says why');
    await kp.$eval('#key-input', (e) => { e.value = ''; });
    await kp.type('#key-input', KEY);
    kp.allowStatus.delete(401); // from here on, no request may be refused
    await kp.click('#key-ok');
    await kp.waitForSelector('main h1', { timeout: WAIT_MS });
    await kp.waitForFunction(() => document.querySelector('main h1').textContent === 'Models', { timeout: WAIT_MS });
    check(await kp.evaluate((k) => sessionStorage.getItem('metaserve.api_key') === k, KEY), 'the key is kept in sessionStorage');
    await show(kp, keyed, '#/jobs');
    check(!(await kp.$('#key-dialog[open]')), 'with the key kept, the next page asks for nothing');
    noProblems(kp, 'the pages with a key');
} catch (e) {
    check(false, 'the run completes', e.stack || String(e));
} finally {
    await browser.close().catch(() => {});
    for (const s of servers) s.kill('SIGTERM');
    rmSync(tmp, { recursive: true, force: true });
}

if (process.env.METASERVE_UPDATE_DOCS_IMG === '1') {
    const dir = join(SRC, 'docs/img');
    mkdirSync(dir, { recursive: true });
    for (const f of shots) copyFileSync(f, join(dir, `ui-${f.split('/').pop()}`));
    console.log(`copied ${shots.length} screenshots to ${dir}`);
}
writeFileSync(join(ART, 'README.txt'), `Screenshots made by tests/browser/test_browser.mjs:\n${shots.join('\n')}\n`);
console.log(`${passed} passed, ${failed} failed (screenshots in ${ART})`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
