// ONNX exports against outside tools: the onnx package's checker and ONNX Runtime.
//
// Starts `metaserve serve` on a fresh SQLite file and a free port, and meta-trains four models
// at once: the README walkthrough's "sine" (its step 1, as written) and three tiny ones that
// cover both heads, every activation and three algorithms:
//     reg  sinusoid regression, 1-32-32-1 ReLU, MAML
//     cls  gaussian 4-way classification, 2-32-32-4 tanh, FOMAML
//     sig  sinusoid regression, 1-16-16-1 sigmoid, Meta-SGD (its rates are not exported)
// then adapts each tiny model to one task and exports every version and adaptation with
// GET /v1/models/{ref}/onnx and GET /v1/adaptations/{id}/onnx. Checks:
//   - 200, Content-Type application/octet-stream, Content-Disposition naming the file;
//   - onnx.checker.check_model(full_check=True) passes (Debian's python3-onnx, check_onnx.py),
//     and the file is IR 8 / opset 17 from producer metaserve, with the expected op sequence,
//     input x float [N, D] (N symbolic), the head's outputs, initializers named and shaped as an
//     nn.Sequential's state_dict, and provenance in metadata_props;
//   - ONNX Runtime (npm onnxruntime-node, CPU) runs it on 64 rows, and its outputs equal
//     v1 predict's for the same float32 rows within |ort - v1| <= 1e-6 + 1e-5 |v1|: both compute
//     in float32, but ORT's Gemm and metaserve's OpenBLAS sgemm sum in different orders, and
//     Softmax/Tanh/Sigmoid use different (correctly rounded to ~1 ulp) exp implementations, so
//     bit-for-bit agreement is not to be expected; 1e-5 is ~100 float32 ulps. Labels must be
//     equal except where v1's two largest probabilities are within that tolerance of each other;
//   - the README's "Deploy an adapted model anywhere": walkthrough steps 1 and 3, then its step
//     5 and its Python script run as written; what the script prints matches its `# ->` lines
//     (the figures within the walkthrough's 0.15 + 5% for CPU-dependent rounding) and the
//     server's own adapted prediction to the 3 decimals printed.
//
// Environment: METASERVE_BIN (the binary), METASERVE_SRC (the source tree). Needs node, curl,
// /usr/bin/python3 with onnx, and tests/onnx/node_modules (run.sh installs it with npm ci).
// Prints "N passed, M failed"; the exit status is non-zero on any failure.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const require = createRequire(import.meta.url);
const ort = require('onnxruntime-node');

const SRC = process.env.METASERVE_SRC || new URL('../..', import.meta.url).pathname;
const BIN = process.env.METASERVE_BIN || join(SRC, 'build/metaserve');
const PY = '/usr/bin/python3'; // Debian's, with python3-onnx
const TOL_REL = 1e-5, TOL_ABS = 1e-6; // ORT vs v1 predict (see the header)
const README_ABS = 0.15, README_REL = 0.05; // the walkthrough's tolerance for README figures

let passed = 0, failed = 0;
function check(ok, what, detail = '') {
    if (ok) passed++, console.log(`ok   ${what}`);
    else failed++, console.log(`FAIL ${what}${detail ? ': ' + detail : ''}`);
    return ok;
}

/* ---- the server ---- */

const tmp = mkdtempSync(join(tmpdir(), 'onnx-test.'));
const env = { ...process.env, METASERVE_DB: join(tmp, 'metaserve.db'), METASERVE_PORT: '0',
              METASERVE_LISTEN: '127.0.0.1', METASERVE_WORKERS: '2' };
const server = spawn(BIN, ['serve'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
const port = await new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error('no "listening" line in 20 s')), 20000);
    server.stderr.on('data', (d) => {
        buf += d;
        const m = buf.match(/"msg":"listening".*"port":(\d+)/);
        if (m) clearTimeout(timer), resolve(+m[1]);
    });
    server.on('exit', (c) => reject(new Error(`server exited (${c}) before listening:\n${buf}`)));
});
server.stderr.resume();
const base = `http://127.0.0.1:${port}`;

async function call(method, path, body) {
    const r = await fetch(base + path, {
        method, headers: body ? { 'Content-Type': 'application/json' } : {},
        body: body ? JSON.stringify(body) : undefined });
    const buf = Buffer.from(await r.arrayBuffer());
    let json = null;
    try { json = JSON.parse(buf.toString('utf8')); } catch { /* binary */ }
    return { status: r.status, headers: r.headers, buf, json };
}

async function waitJob(id) {
    const t0 = Date.now();
    for (;;) {
        const r = await call('GET', `/v1/jobs/${id}`);
        if (['succeeded', 'failed', 'cancelled'].includes(r.json.state)) return r.json;
        if (Date.now() - t0 > 120000) throw new Error(`job ${id} still ${r.json.state}`);
        await new Promise((res) => setTimeout(res, 100));
    }
}

/* ---- the README ---- */

const readme = readFileSync(join(SRC, 'README.md'), 'utf8');
const sectionOf = (title) => readme.split(/^## /m).find((s) => s.startsWith(title));
const walk = sectionOf('Five minutes with curl');
const deploy = sectionOf('Deploy an adapted model anywhere');
if (!walk || !deploy) throw new Error('README.md lacks the walkthrough or the deploy section');
// the commands of step n of an sh block ("# n. title", commands, "# -> ..." lines)
function step(block, n) {
    const lines = block.split('\n');
    const i = lines.findIndex((l) => l.startsWith(`# ${n}. `));
    const cmd = [], out = [];
    for (const l of lines.slice(i + 1)) {
        if (/^# \d+\. /.test(l)) break;
        if (l.startsWith('# -> ')) out.push(l.slice(5));
        else if (!l.startsWith('#') && l.trim()) cmd.push(l);
    }
    return { cmd: cmd.join('\n'), out };
}
const walkSh = walk.match(/```sh\n([\s\S]*?)```/)[1];
const deploySh = deploy.match(/```sh\n([\s\S]*?)```/)[1];
const deployPy = deploy.match(/```python\n([\s\S]*?)```/)[1];
const numbers = (t) => (t.match(/-?\d+(\.\d+)?(e-?\d+)?/g) || []).map(Number);
const ids = {};
function sh(cmd, cwd) {
    let c = cmd.replaceAll('localhost:8080', `127.0.0.1:${port}`);
    for (const [placeholder, id] of Object.entries(ids)) c = c.replaceAll(placeholder, id);
    return execFileSync('bash', ['-c', c], { encoding: 'utf8', cwd });
}

/* ---- what is exported ---- */

const models = {
    reg: { arch: [1, 32, 32, 1], act: 'relu', head: 'regression', algo: 'maml', family: 'sinusoid' },
    cls: { arch: [2, 32, 32, 4], act: 'tanh', head: 'classification', algo: 'fomaml', family: 'gaussian' },
    sig: { arch: [1, 16, 16, 1], act: 'sigmoid', head: 'regression', algo: 'metasgd', family: 'sinusoid' },
};
function config(name, m) {
    const tasks = m.family === 'gaussian'
        ? { family: 'gaussian', n_way: 4, dim: 2, k_support: 5, k_query: 5 }
        : { family: 'sinusoid', k_support: 10, k_query: 10 };
    return { name, architecture: { sizes: m.arch, activation: m.act, head: m.head },
             algorithm: m.algo, inner: { lr: 0.01, steps: 1 }, outer: { optimizer: 'adam', lr: 0.001 },
             meta_batch: 8, iterations: 300, seed: 7, tasks };
}
// a support set of the model's kind: one sinusoid, or 4 clusters of 5 points
function support(m) {
    if (m.head === 'regression') {
        const x = [...Array(10).keys()].map((i) => -4.5 + i);
        return { x: x.map((v) => [v]), y: x.map((v) => [1.5 * Math.sin(v - 0.3)]) };
    }
    const x = [], y = [];
    for (let s = 0; s < 5; s++)
        for (let c = 0; c < 4; c++) {
            const a = (2 * Math.PI * c) / 4;
            x.push([3 * Math.cos(a) + 0.3 * Math.sin(7 * s + c), 3 * Math.sin(a) + 0.3 * Math.cos(5 * s - c)]);
            y.push([c]);
        }
    return { x, y };
}
// 64 rows of float32 values over the input range (a fixed, deterministic spread)
function rows(d) {
    const out = [];
    for (let i = 0; i < 64; i++)
        out.push([...Array(d).keys()].map((j) => Math.fround(-5 + ((i * 37 + j * 11) % 64) * (10 / 63))));
    return out;
}

const ops = (m) => {
    const act = { relu: 'Relu', tanh: 'Tanh', sigmoid: 'Sigmoid' }[m.act];
    const o = [];
    for (let l = 0; l < m.arch.length - 1; l++) o.push('Gemm', ...(l < m.arch.length - 2 ? [act] : []));
    return m.head === 'classification' ? [...o, 'Softmax', 'ArgMax'] : o;
};

// the model-level checks of one check_onnx.py description
function checkDescription(what, d, m, e) {
    check(d.ir_version === 8 && JSON.stringify(d.opset) === '{"":17}', `${what}: IR 8, opset 17`, JSON.stringify([d.ir_version, d.opset]));
    check(d.producer[0] === 'metaserve' && d.producer[1] === '1.0.0' && d.model_version === e.version,
          `${what}: producer and model_version`, JSON.stringify([d.producer, d.model_version]));
    const meta = { model: e.name, version: String(e.version), algorithm: m.algo,
                   ...(e.adaptation ? { adaptation_id: e.adaptation } : {}),
                   architecture: JSON.stringify({ sizes: m.arch, activation: m.act, head: m.head }) };
    check(JSON.stringify(d.metadata) === JSON.stringify(meta), `${what}: metadata_props`, JSON.stringify(d.metadata));
    check(JSON.stringify(d.ops) === JSON.stringify(ops(m)), `${what}: ops ${d.ops.join(',')}`);
    const D = m.arch[0], O = m.arch.at(-1);
    check(JSON.stringify(d.inputs) === JSON.stringify([{ name: 'x', elem_type: 'FLOAT', shape: ['N', D] }]),
          `${what}: input x float [N, ${D}]`, JSON.stringify(d.inputs));
    const outs = m.head === 'classification'
        ? [{ name: 'probabilities', elem_type: 'FLOAT', shape: ['N', O] }, { name: 'labels', elem_type: 'INT64', shape: ['N'] }]
        : [{ name: 'y', elem_type: 'FLOAT', shape: ['N', O] }];
    check(JSON.stringify(d.outputs) === JSON.stringify(outs), `${what}: outputs`, JSON.stringify(d.outputs));
    const inits = [];
    for (let l = 0; l < m.arch.length - 1; l++)
        inits.push({ name: `${2 * l}.weight`, dims: [m.arch[l + 1], m.arch[l]] }, { name: `${2 * l}.bias`, dims: [m.arch[l + 1]] });
    check(JSON.stringify(d.initializers) === JSON.stringify(inits), `${what}: initializers`, JSON.stringify(d.initializers));
}

// ORT against v1 predict on the same rows; returns the largest |ort - v1| / (abs + rel |v1|)
async function compare(what, file, m, predictPath) {
    const X = rows(m.arch[0]);
    const D = m.arch[0];
    const session = await ort.InferenceSession.create(file);
    const feeds = { x: new ort.Tensor('float32', Float32Array.from(X.flat()), [X.length, D]) };
    const res = await session.run(feeds);
    const v1 = await call('POST', predictPath, { x: X });
    if (!check(v1.status === 200, `${what}: v1 predict 200`, v1.buf.toString())) return;
    let worst = 0, worstAt = '';
    const cmp = (got, want, name) => {
        for (let i = 0; i < want.length; i++)
            for (let j = 0; j < want[i].length; j++) {
                const g = got[i * want[i].length + j], w = want[i][j];
                const q = Math.abs(g - w) / (TOL_ABS + TOL_REL * Math.abs(w));
                if (!(q <= worst)) worst = q, worstAt = `${name}[${i}][${j}] ort ${g} v1 ${w}`;
            }
    };
    if (m.head === 'regression') {
        check(JSON.stringify(res.y.dims) === JSON.stringify([64, m.arch.at(-1)]), `${what}: ORT y dims`, res.y.dims);
        cmp(res.y.data, v1.json.y, 'y');
    } else {
        const P = v1.json.probabilities;
        cmp(res.probabilities.data, P, 'probabilities');
        const labels = Array.from(res.labels.data, Number);
        const bad = labels.filter((l, i) => {
            if (l === v1.json.labels[i]) return false;
            const p = P[i], w = v1.json.labels[i]; // a near-tie may go either way
            return Math.abs(p[l] - p[w]) > TOL_ABS + TOL_REL * Math.abs(p[w]);
        });
        check(res.labels.type === 'int64' && labels.length === 64 && bad.length === 0,
              `${what}: ORT labels equal v1's`, `${bad.length} differ`);
    }
    check(worst <= 1, `${what}: ORT outputs equal v1 predict's (largest error ${worst.toFixed(3)} of the tolerance)`, worstAt);
}

try {
    // the README walkthrough's model (step 1) and the three tiny ones, trained at once
    const r1 = JSON.parse(sh(step(walkSh, 1).cmd));
    ids[(step(walkSh, 1).out.join(' ').match(/"id":"([0-9a-f]+…)"/) || [])[1]] = r1.id;
    const jobs = { sine: r1.id };
    for (const [name, m] of Object.entries(models)) {
        const r = await call('POST', '/v1/jobs', config(name, m));
        check(r.status === 202, `job ${name} accepted`, r.buf.toString());
        jobs[name] = r.json.id;
    }
    const version = {};
    for (const [name, id] of Object.entries(jobs)) {
        const j = await waitJob(id);
        check(j.state === 'succeeded', `job ${name} succeeded`, JSON.stringify(j));
        version[name] = j.model.version;
    }

    // exports of every version and one adaptation of each
    const exports = [];
    for (const [name, m] of Object.entries(models)) {
        const a = await call('POST', `/v1/models/${name}/adapt`, { support: support(m), steps: 5 });
        check(a.status === 201, `adapt ${name}`, a.buf.toString());
        exports.push({ name, m, version: version[name], path: `/v1/models/${name}@${version[name]}/onnx`,
                       predict: `/v1/models/${name}@${version[name]}/predict`, file: `${name}-v${version[name]}.onnx` });
        exports.push({ name, m, version: version[name], adaptation: a.json.id, path: `/v1/adaptations/${a.json.id}/onnx`,
                       predict: `/v1/adaptations/${a.json.id}/predict`, file: `${name}-v${version[name]}-${a.json.id}.onnx` });
    }
    for (const e of exports) {
        const r = await call('GET', e.path);
        check(r.status === 200 && r.headers.get('content-type') === 'application/octet-stream',
              `GET ${e.path}: 200 application/octet-stream`, `${r.status} ${r.headers.get('content-type')}`);
        check(r.headers.get('content-disposition') === `attachment; filename="${e.file}"`,
              `GET ${e.path}: Content-Disposition`, r.headers.get('content-disposition'));
        e.local = join(tmp, e.file);
        writeFileSync(e.local, r.buf);
    }

    // the onnx package's checker, and the description to compare
    const described = execFileSync(PY, [join(SRC, 'tests/onnx/check_onnx.py'), ...exports.map((e) => e.local)],
                                   { encoding: 'utf8' }).trim().split('\n').map((l) => JSON.parse(l));
    check(described.length === exports.length, `onnx.checker.check_model passes all ${exports.length} exports`);
    exports.forEach((e, i) => checkDescription(e.file, described[i], e.m, e));

    // ONNX Runtime against v1 predict
    for (const e of exports) await compare(e.file, e.local, e.m, e.predict);

    // the README section: walkthrough step 3, its step 5 and its Python script, as written
    const s3 = step(walkSh, 3);
    const a3 = JSON.parse(sh(s3.cmd));
    ids[(s3.out.join(' ').match(/"id":"([0-9a-f]+…)"/) || [])[1]] = a3.id;
    sh(step(deploySh, 5).cmd, tmp);
    const readmeFile = join(tmp, 'sine-adapted.onnx');
    const dSine = JSON.parse(execFileSync(PY, [join(SRC, 'tests/onnx/check_onnx.py'), readmeFile], { encoding: 'utf8' }));
    checkDescription('README sine-adapted.onnx', dSine, { arch: [1, 40, 40, 1], act: 'relu', head: 'regression', algo: 'maml' },
                     { name: 'sine', version: version.sine, adaptation: a3.id });
    await compare('README sine-adapted.onnx', readmeFile, { arch: [1, 40, 40, 1], head: 'regression' },
                  `/v1/adaptations/${a3.id}/predict`);
    const pyOut = execFileSync(PY, ['-c', deployPy], { encoding: 'utf8', cwd: tmp }).trim().split('\n');
    const wantPy = deployPy.split('\n').filter((l) => l.startsWith('# -> ')).map((l) => l.slice(5));
    check(pyOut.length === 2 && pyOut[0] === wantPy[0], `README script prints "${wantPy[0]}"`, pyOut[0]);
    const got = numbers(pyOut[1] || ''), want = numbers(wantPy[1]);
    check(got.length === 3 && got.every((g, i) => Math.abs(g - want[i]) <= README_ABS + README_REL * Math.abs(want[i])),
          `README script's predictions ${got} vs the README's ${want}`);
    const xs = numbers(deployPy.match(/np\.array\((\[\[[^)]*\]\])/)[1]);
    const server3 = (await call('POST', `/v1/adaptations/${a3.id}/predict`, { x: xs.map((v) => [v]) })).json.y.map((v) => v[0]);
    check(got.every((g, i) => Math.abs(g - server3[i]) <= 0.0005 + 1e-6),
          `README script's predictions equal the server's ${server3.map((v) => v.toFixed(3))} to 3 decimals`);
} catch (e) {
    check(false, 'the ONNX checks ran', e.stack);
} finally {
    server.kill('SIGTERM');
    await new Promise((res) => server.on('exit', res));
    rmSync(tmp, { recursive: true, force: true });
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
