// A short journey through every v1 route, for the contract tests (types.mjs, prism.mjs).
//
// startServer() runs the real binary on a fresh SQLite file and a free loopback port, with an
// admin and a client API key. journey(base) then goes through the API as a client would:
// datasets, jobs (regression, classification, on a dataset, one cancelled), the models they
// write, versions, aliases, weights, adapt, predict (regression and classification, stored and
// inline adaptations), the lists with their page tokens, the deletes, and errors (401, 403, 404,
// 409, 413 for a body over the limit, 415, 422, 400). Every exchange is recorded: {op: [method,
// path template], status, query, req (the JSON body sent), bad (the request breaks the contract
// on purpose), res (the body received, parsed when JSON), type (its media type), headers}. Each step states the status it expects; a different one is a failure.
//
// Steps marked `direct` send what the contract itself forbids (no key, an unknown field,
// malformed JSON, a text body): a validating proxy answers those itself, so they are left out
// when `direct` is false.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const SRC = process.env.METASERVE_SRC || new URL('../..', import.meta.url).pathname;
export const BIN = process.env.METASERVE_BIN || join(SRC, 'build/metaserve');
export const ADMIN = 'admin-key-contract-0123456789';
export const CLIENT = 'client-key-contract-0123456789';
const MAX_BODY = 256 * 1024; // small, for a 413 that costs little

// The binary on a temporary database: {url, stop()}.
export async function startServer() {
    const tmp = mkdtempSync(join(tmpdir(), 'contract.'));
    const env = { ...process.env, METASERVE_DB: join(tmp, 'metaserve.db'), METASERVE_PORT: '0',
                  METASERVE_LISTEN: '127.0.0.1', METASERVE_API_KEYS: `admin:${ADMIN},client:${CLIENT}`,
                  METASERVE_MAX_BODY_BYTES: String(MAX_BODY) };
    delete env.METASERVE_API_KEYS_FILE;
    const proc = spawn(BIN, ['serve'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
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
    return {
        url: `http://127.0.0.1:${port}`,
        async stop() {
            if (proc.exitCode === null) {
                proc.kill('SIGTERM');
                await new Promise((res) => proc.on('exit', res));
            }
            rmSync(tmp, { recursive: true, force: true });
        },
    };
}

const sleep = (ms) => new Promise((res) => setTimeout(res, ms));

export async function journey(base, { direct = true, log = console.log } = {}) {
    const records = [];
    const failures = [];

    // One exchange. op: [method, template]; path: the path sent; opts: {key, body (JSON),
    // raw (a string body), ctype, query, expect (status)}.
    async function call(op, path, { key = ADMIN, body, raw, ctype, query, expect, bad } = {}) {
        const [method] = op;
        const headers = {};
        if (key) headers.authorization = `Bearer ${key}`;
        let payload;
        if (body !== undefined) payload = JSON.stringify(body), headers['content-type'] = 'application/json';
        if (raw !== undefined) payload = raw;
        if (ctype) headers['content-type'] = ctype;
        const qs = query ? '?' + new URLSearchParams(query).toString() : '';
        const resp = await fetch(base + path + qs, { method, headers, body: payload, redirect: 'manual' });
        const text = await resp.text();
        const type = (resp.headers.get('content-type') || '').split(';')[0].trim();
        let res = text;
        if (/json$/.test(type)) {
            try {
                res = JSON.parse(text);
            } catch {
                failures.push(`${method} ${path}: a ${type} body that is not JSON: ${text.slice(0, 200)}`);
            }
        }
        const rec = { op, path, status: resp.status, query, req: body, raw, bad, res, type,
                      headers: Object.fromEntries(resp.headers) };
        records.push(rec);
        if (expect !== undefined && resp.status !== expect)
            failures.push(`${method} ${path}${qs}: status ${resp.status}, expected ${expect}: ${text.slice(0, 400)}`);
        return rec;
    }
    async function waitJob(id, states = ['succeeded', 'failed', 'cancelled']) {
        const t0 = Date.now();
        for (;;) {
            const r = await call(['GET', '/v1/jobs/{id}'], `/v1/jobs/${id}`, { key: CLIENT, expect: 200 });
            if (states.includes(r.res.state) || Date.now() - t0 > 120000) return r;
            await sleep(100);
        }
    }

    // ---- health ----
    await call(['GET', '/livez'], '/livez', { key: null, expect: 200 });
    await call(['GET', '/readyz'], '/readyz', { key: null, expect: 200 });
    await call(['GET', '/openapi.yaml'], '/openapi.yaml', { key: null, expect: 200 });

    // ---- datasets ----
    const lines = [0.5, -1, 2].map((a, t) => {
        const xs = [-2, -1, 0, 1, 2, 3];
        return { x: xs.map((x) => [x]), y: xs.map((x) => [a * x + t]) };
    });
    const dsTasks = (await call(['POST', '/v1/datasets'], '/v1/datasets',
        { body: { name: 'lines', kind: 'tasks', tasks: lines }, expect: 201 })).res;
    const pool = { x: [], labels: [] };
    for (const [c, cx, cy] of [[3, 0, 0], [5, 5, 5], [7, -5, 5], [9, 5, -5]])
        for (let i = 0; i < 4; i++) pool.x.push([cx + 0.1 * i, cy - 0.1 * i]), pool.labels.push(c);
    const dsClasses = (await call(['POST', '/v1/datasets'], '/v1/datasets',
        { body: { name: 'blobs-pool', kind: 'classes', ...pool, test_classes: [9] }, expect: 201 })).res;
    const page1 = (await call(['GET', '/v1/datasets'], '/v1/datasets',
        { key: CLIENT, query: { page_size: '1' }, expect: 200 })).res;
    await call(['GET', '/v1/datasets'], '/v1/datasets',
        { key: CLIENT, query: { page_size: '1', page_token: page1.next_page_token }, expect: 200 });
    await call(['GET', '/v1/datasets/{id}'], `/v1/datasets/${dsTasks.id}`, { key: CLIENT, expect: 200 });
    await call(['GET', '/v1/datasets/{id}'], `/v1/datasets/${dsClasses.id}`, { key: CLIENT, expect: 200 });

    // ---- jobs ----
    const post = (body, expect = 202) => call(['POST', '/v1/jobs'], '/v1/jobs', { body, expect });
    const sine = (await post({
        name: 'sine', architecture: { sizes: [1, 16, 1] }, meta_batch: 4, iterations: 200,
        tasks: { family: 'sinusoid', k_support: 5, k_query: 5 } })).res;
    const blobs = (await post({
        name: 'blobs', architecture: { sizes: [2, 16, 3], activation: 'tanh', head: 'classification' },
        algorithm: 'metasgd', inner: { lr: 0.1, steps: 2 }, outer: { clip_norm: 10 }, meta_batch: 4,
        iterations: 100, seed: 7, tasks: { family: 'gaussian', n_way: 3, dim: 2, k_support: 1, k_query: 5 } })).res;
    const reptile = (await post({
        name: 'lines-reptile', architecture: { sizes: [1, 8, 1] }, algorithm: 'reptile',
        inner: { lr: 0.02, steps: 3 }, outer: { optimizer: 'sgd', lr: 0.1 }, iterations: 50,
        tasks: { dataset: dsTasks.id, k_support: 2, k_query: 2 } })).res;
    const pooled = (await post({
        name: 'pooled', architecture: { sizes: [2, 8, 3], head: 'classification' }, algorithm: 'anil',
        iterations: 30, meta_batch: 2, tasks: { dataset: dsClasses.id, n_way: 3, k_support: 1, k_query: 2 } })).res;
    // a long job, cancelled (a body sent to cancel is ignored), then cancelled again: 409
    const slow = (await post({ name: 'slow', iterations: 1000000, tasks: { family: 'sinusoid' } })).res;
    await call(['POST', '/v1/jobs/{id}/cancel'], `/v1/jobs/${slow.id}/cancel`, { body: {}, expect: 200 });
    await waitJob(slow.id, ['cancelled']);
    await call(['POST', '/v1/jobs/{id}/cancel'], `/v1/jobs/${slow.id}/cancel`, { expect: 409 });
    for (const j of [sine, blobs, reptile, pooled]) {
        const r = await waitJob(j.id);
        if (r.res.state !== 'succeeded') failures.push(`job ${j.id} ${r.res.state}: ${r.res.error}`);
    }
    const sine2 = (await post({ name: 'sine', architecture: { sizes: [1, 16, 1] }, meta_batch: 2,
                                iterations: 20, algorithm: 'fomaml' })).res;
    await waitJob(sine2.id);
    const jobs1 = (await call(['GET', '/v1/jobs'], '/v1/jobs', { key: CLIENT, query: { page_size: '2' }, expect: 200 })).res;
    await call(['GET', '/v1/jobs'], '/v1/jobs',
        { key: CLIENT, query: { page_size: '50', page_token: jobs1.next_page_token }, expect: 200 });
    const curve = (await call(['GET', '/v1/jobs/{id}/metrics'], `/v1/jobs/${sine.id}/metrics`,
        { key: CLIENT, query: { page_size: '3' }, expect: 200 })).res;
    await call(['GET', '/v1/jobs/{id}/metrics'], `/v1/jobs/${sine.id}/metrics`,
        { key: CLIENT, query: { page_token: curve.next_page_token }, expect: 200 });
    await call(['GET', '/v1/jobs/{id}/metrics'], `/v1/jobs/${blobs.id}/metrics`,
        { key: CLIENT, query: { after_step: '0' }, expect: 200 });

    // ---- models, versions, aliases, weights ----
    const models1 = (await call(['GET', '/v1/models'], '/v1/models', { key: CLIENT, query: { page_size: '2' }, expect: 200 })).res;
    await call(['GET', '/v1/models'], '/v1/models',
        { key: CLIENT, query: { page_token: models1.next_page_token }, expect: 200 });
    await call(['PUT', '/v1/models/{name}/aliases/{alias}'], '/v1/models/sine/aliases/prod',
        { body: { version: 1 }, expect: 200 });
    await call(['GET', '/v1/models/{name}'], '/v1/models/sine', { key: CLIENT, expect: 200 });
    for (const [m, v] of [['sine', 1], ['sine', 2], ['blobs', 1], ['lines-reptile', 1], ['pooled', 1]])
        await call(['GET', '/v1/models/{name}/versions/{version}'], `/v1/models/${m}/versions/${v}`,
            { key: CLIENT, expect: 200 });
    await call(['GET', '/v1/models/{ref}/weights'], '/v1/models/sine@prod/weights', { key: CLIENT, expect: 200 });
    await call(['GET', '/v1/models/{ref}/weights'], '/v1/models/blobs@1/weights', { key: CLIENT, expect: 200 });

    // ---- adapt and predict ----
    const xs = [-4, -2, 0, 2, 4];
    const support = { x: xs.map((x) => [x]), y: xs.map((x) => [Math.sin(x)]) };
    const a1 = (await call(['POST', '/v1/models/{ref}/adapt'], '/v1/models/sine@prod/adapt',
        { key: CLIENT, body: { support, steps: 5, lr: 0.01, ttl_s: 600 }, expect: 201 })).res;
    await call(['GET', '/v1/adaptations/{id}'], `/v1/adaptations/${a1.id}`, { key: CLIENT, expect: 200 });
    await call(['POST', '/v1/adaptations/{id}/predict'], `/v1/adaptations/${a1.id}/predict`,
        { key: CLIENT, body: { x: [[0], [1.5]] }, expect: 200 });
    await call(['POST', '/v1/models/{ref}/predict'], '/v1/models/sine/predict',
        { key: CLIENT, body: { x: [[0], [1.5]] }, expect: 200 });
    await call(['POST', '/v1/models/{ref}/predict'], '/v1/models/sine@1/predict',
        { key: CLIENT, body: { x: [[0]], support, steps: 3 }, expect: 200 });
    const csupport = { x: [[0, 0], [5, 5], [-5, 5]], y: [[0], [1], [2]] };
    const a2 = (await call(['POST', '/v1/models/{ref}/adapt'], '/v1/models/blobs/adapt',
        { key: CLIENT, body: { support: csupport }, expect: 201 })).res;
    await call(['POST', '/v1/adaptations/{id}/predict'], `/v1/adaptations/${a2.id}/predict`,
        { key: CLIENT, body: { x: [[0.2, 0.1], [4.9, 5]] }, expect: 200 });
    await call(['POST', '/v1/models/{ref}/predict'], '/v1/models/blobs/predict',
        { key: CLIENT, body: { x: [[0.2, 0.1]] }, expect: 200 });
    await call(['POST', '/v1/models/{ref}/predict'], '/v1/models/pooled/predict',
        { key: CLIENT, body: { x: [[0.2, 0.1]], support: csupport, steps: null, lr: null }, expect: 200 });

    // ---- the dashboard's files ----
    if (direct) { // Prism's proxy follows redirects and checks the page against the redirect
        await call(['GET', '/'], '/', { key: null, expect: 302 });
        await call(['GET', '/ui'], '/ui', { key: null, expect: 308 });
    }
    await call(['GET', '/ui/'], '/ui/', { key: null, expect: 200 });
    await call(['GET', '/ui/{asset}'], '/ui/app.js', { key: null, expect: 200 });

    // ---- a finished job's event stream (its state, then done) ----
    await call(['GET', '/v1/jobs/{id}/events'], `/v1/jobs/${sine.id}/events`,
        { key: CLIENT, query: { interval_ms: '100' }, expect: 200 });

    // ---- weights in and out: a version imported from the JSON weights, an adaptation's ----
    const wts = (await call(['GET', '/v1/models/{ref}/weights'], '/v1/models/sine@1/weights',
        { key: CLIENT, expect: 200 })).res;
    await call(['POST', '/v1/models/{name}/versions'], '/v1/models/imported/versions',
        { body: wts, expect: 201 });
    await call(['GET', '/v1/adaptations/{id}/weights'], `/v1/adaptations/${a1.id}/weights`,
        { key: CLIENT, expect: 200 });

    // ---- ONNX exports ----
    await call(['GET', '/v1/models/{ref}/onnx'], '/v1/models/blobs@1/onnx', { key: CLIENT, expect: 200 });
    await call(['GET', '/v1/adaptations/{id}/onnx'], `/v1/adaptations/${a1.id}/onnx`,
        { key: CLIENT, expect: 200 });

    // ---- the Open Inference Protocol (/v2), JSON tensors (binary ones are raw bytes the types
    // cannot describe: tests/http/test_oip.c covers them) ----
    await call(['GET', '/v2/health/live'], '/v2/health/live', { key: null, expect: 200 });
    await call(['GET', '/v2/health/ready'], '/v2/health/ready', { key: null, expect: 200 });
    await call(['GET', '/v2'], '/v2', { key: null, expect: 200 });
    await call(['GET', '/v2/models/{name}'], '/v2/models/sine', { key: CLIENT, expect: 200 });
    await call(['GET', '/v2/models/{name}/versions/{version}'], '/v2/models/sine/versions/1',
        { key: CLIENT, expect: 200 });
    await call(['GET', '/v2/models/{name}/ready'], '/v2/models/blobs/ready', { key: CLIENT, expect: 200 });
    await call(['GET', '/v2/models/{name}/versions/{version}/ready'], '/v2/models/blobs/versions/1/ready',
        { key: CLIENT, expect: 200 });
    await call(['POST', '/v2/models/{name}/infer'], '/v2/models/sine/infer', { key: CLIENT, expect: 200,
        body: { id: 'j1', inputs: [{ name: 'x', shape: [2, 1], datatype: 'FP32', data: [0, 1.5] }] } });
    await call(['POST', '/v2/models/{name}/versions/{version}/infer'], '/v2/models/blobs/versions/1/infer',
        { key: CLIENT, expect: 200, body: { inputs: [{ name: 'x', shape: [1, 2], datatype: 'FP64',
            data: [[0.2, 0.1]] }], outputs: [{ name: 'labels' }] } });
    await call(['POST', '/v2/models/{name}/infer'], `/v2/models/adaptation:${a1.id}/infer`, { key: CLIENT,
        expect: 200, body: { inputs: [{ name: 'x', shape: [1, 1], datatype: 'FP32', data: [0.5] }] } });
    await call(['POST', '/v2/models/{name}/infer'], '/v2/models/nope/infer', { key: CLIENT, expect: 404,
        body: { inputs: [{ name: 'x', shape: [1, 1], datatype: 'FP32', data: [0.5] }] } });

    // ---- errors the contract allows ----
    await call(['GET', '/v1/models/{name}'], '/v1/models/nope', { key: CLIENT, expect: 404 });
    await call(['GET', '/v1/jobs/{id}'], '/v1/jobs/0123456789abcdef0123456789abcdef', { key: CLIENT, expect: 404 });
    await call(['POST', '/v1/models/{ref}/predict'], '/v1/models/sine@nope/predict',
        { key: CLIENT, body: { x: [[0]] }, expect: 404 });
    await call(['POST', '/v1/models/{ref}/predict'], '/v1/models/sine/predict',
        { key: CLIENT, body: { x: [[1, 2]] }, expect: 422 });
    await call(['POST', '/v1/jobs'], '/v1/jobs', { key: CLIENT, body: { name: 'x' }, expect: 403 });
    await call(['POST', '/v1/jobs'], '/v1/jobs',
        { body: { tasks: { dataset: '0123456789abcdef0123456789abcdef' } }, expect: 422 });
    await call(['DELETE', '/v1/datasets/{id}'], `/v1/datasets/${dsTasks.id}`, { key: CLIENT, expect: 403 });
    const big = { x: Array.from({ length: MAX_BODY / 4 }, () => [0.5]) };
    await call(['POST', '/v1/models/{ref}/predict'], '/v1/models/sine/predict', { key: CLIENT, body: big, expect: 413 });
    if (direct) {
        // what a validating proxy refuses by itself
        await call(['GET', '/v1/models'], '/v1/models', { key: null, expect: 401 });
        await call(['POST', '/v1/jobs'], '/v1/jobs', { body: { name: 'x', colour: 'red' }, expect: 422, bad: true });
        await call(['POST', '/v1/jobs'], '/v1/jobs', { raw: '{"name": ', ctype: 'application/json', expect: 400 });
        await call(['POST', '/v1/jobs'], '/v1/jobs', { raw: 'name=x', ctype: 'text/plain', expect: 415 });
        await call(['GET', '/v1/datasets'], '/v1/datasets',
            { key: CLIENT, query: { page_size: '0' }, expect: 422, bad: true });
    }

    // ---- deletes ----
    await call(['DELETE', '/v1/models/{name}/aliases/{alias}'], '/v1/models/sine/aliases/prod', { expect: 204 });
    await call(['DELETE', '/v1/adaptations/{id}'], `/v1/adaptations/${a1.id}`, { key: CLIENT, expect: 204 });
    await call(['GET', '/v1/adaptations/{id}'], `/v1/adaptations/${a1.id}`, { key: CLIENT, expect: 404 });
    await call(['DELETE', '/v1/models/{name}/versions/{version}'], '/v1/models/sine/versions/2', { expect: 204 });
    await call(['DELETE', '/v1/models/{name}'], '/v1/models/blobs', { expect: 204 });
    await call(['DELETE', '/v1/datasets/{id}'], `/v1/datasets/${dsTasks.id}`, { expect: 204 });
    await call(['GET', '/metrics'], '/metrics', { key: null, expect: 200 });

    log(`journey: ${records.length} exchanges, ${failures.length} unexpected`);
    return { records, failures };
}
