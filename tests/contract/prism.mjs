// The contract checked by a third-party validator: Stoplight Prism (tools/contract) as a
// validating proxy, `prism proxy --errors api/openapi.yaml <server>`, in front of the real
// binary, and the journey of journey.mjs (every v1 route, 2xx and the errors the contract allows)
// sent through it. Prism checks each request and each response against the spec; with --errors
// it answers a violation itself (422 for a request, 500 for a response, a problem whose type is
// Prism's), so the journey's expected statuses fail, and it logs the violation. The test fails
// on any unexpected status, any response of Prism's own, an `sl-violations` header, or a
// "Violation" line in Prism's log.
//
// Not sent through Prism (journey.mjs's `direct` steps, covered by types.mjs and the C suites):
// what the contract itself forbids (no key, unknown fields, malformed JSON, a text body, an
// out-of-range query), which Prism answers without the server, 405s, which Prism does not
// know (it re-serialises JSON bodies, too, so byte-level cases stay in the direct tests), and
// the dashboard's redirects, which Prism's proxy follows before it validates.
//
// Environment: METASERVE_BIN, METASERVE_SRC as in journey.mjs. Exits non-zero on any failure.
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { journey, SRC, startServer } from './journey.mjs';

const PRISM = join(SRC, 'tools/contract/node_modules/.bin/prism');

// a free loopback port for Prism (it takes no port 0)
const freePort = () => new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => { const { port } = srv.address(); srv.close(() => resolve(port)); });
});

let failed = 0;
const fail = (what) => (failed++, console.log(`FAIL ${what}`));
const t0 = Date.now();
const server = await startServer();
let prism, log = '';
try {
    const port = await freePort();
    prism = spawn(PRISM, ['proxy', '--errors', '-h', '127.0.0.1', '-p', String(port),
                          join(SRC, 'api/openapi.yaml'), server.url],
                  { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, SCARF_ANALYTICS: 'false' } });
    prism.stdout.on('data', (d) => (log += d));
    prism.stderr.on('data', (d) => (log += d));
    const exited = new Promise((res) => prism.on('exit', res));
    for (const t = Date.now(); !/Prism is listening/.test(log);) {
        if (prism.exitCode !== null || Date.now() - t > 90000)
            throw new Error(`Prism did not start listening:\n${log}`);
        await new Promise((res) => setTimeout(res, 100));
    }
    const t1 = Date.now();
    console.log(`prism proxy listening on ${port} after ${((t1 - t0) / 1000).toFixed(1)} s`);

    const { records, failures } = await journey(`http://127.0.0.1:${port}`, { direct: false });
    for (const f of failures) fail(f);
    for (const r of records) {
        const what = `${r.op[0]} ${r.path} ${r.status}`;
        if (r.headers['sl-violations']) fail(`${what}: sl-violations ${r.headers['sl-violations']}`);
        if (typeof r.res === 'object' && String(r.res?.type).includes('stoplight.io/prism'))
            fail(`${what}: Prism answered ${JSON.stringify(r.res).slice(0, 1500)}`);
    }
    const statuses = new Set(records.map((r) => r.status));
    console.log(`${records.length} exchanges through Prism in ${((Date.now() - t1) / 1000).toFixed(1)} s, ` +
                `statuses ${[...statuses].sort().join(' ')}`);
    prism.kill('SIGTERM');
    await exited;
    const violations = log.split('\n').filter((l) => /violation/i.test(l));
    for (const v of violations) fail(`Prism: ${v.trim()}`);
    // the proxy must have forwarded every exchange (none answered by Prism itself)
    const forwarded = (log.match(/Received forward response/g) || []).length;
    if (forwarded !== records.length) fail(`Prism forwarded ${forwarded} of ${records.length} requests`);
    else console.log(`ok   Prism forwarded all ${forwarded} requests`);
} catch (e) {
    fail(e.stack);
} finally {
    if (prism && prism.exitCode === null) prism.kill('SIGKILL');
    await server.stop();
}
if (failed) console.log(`--- Prism's log ---\n${log.slice(-20000)}`);
console.log(failed ? `${failed} failed` : 'passed');
process.exit(failed ? 1 : 0);
