// The README's "Five minutes with curl" walkthrough, run as written against a real server.
//
// Extracts the walkthrough's sh block from README.md, starts `metaserve serve` on a fresh SQLite
// file and a free port, and runs each numbered step's curl command through bash with only these
// substitutions: localhost:8080 -> the test server, the placeholder ids (`d7e8…`, `9670…`) -> the
// ids the previous steps returned, and `-w` appended to curl to see the HTTP status. Then checks
// what the README says the steps print:
//   - the status and the keys of every `# ->` line;
//   - the support set's y values are 2 sin(x - 0.5) at its x (to the 3 decimals printed), and the
//     "truth" figures of step 4 are too;
//   - the numbers of steps 3 and 4 (support losses, adapted and meta-parameter predictions)
//     within |got - readme| <= 0.15 + 5% of |readme|. Training is deterministic for a given
//     build and CPU, but OpenBLAS chooses its kernels (and so its float summation order) by CPU,
//     and 5,000 Adam steps carry such rounding differences into the weights: the tolerance admits
//     that (the largest difference measured between the README's machine and an AMD EPYC
//     running OpenBLAS's Zen kernels was 0.135, an adapted prediction at x = 3), and is far
//     below the gap between an adapted and an unadapted prediction (~1);
//   - the adapted predictions are closer to the truth than the meta-parameters';
//   - the validation example of the paragraph after the block gets the status and detail shown.
// Step 2's figures are a snapshot of a running job (iteration 4092): the step is polled until the
// job succeeds, and only its keys are checked (val_mse among them: a regressor's validation metric).
//
// Environment: METASERVE_BIN (the binary), METASERVE_SRC (the source tree). Needs node and curl.
// Prints "N passed, M failed"; the exit status is non-zero on any failure.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const SRC = process.env.METASERVE_SRC || new URL('../..', import.meta.url).pathname;
const BIN = process.env.METASERVE_BIN || join(SRC, 'build/metaserve');
const TOL_ABS = 0.15, TOL_REL = 0.05;

let passed = 0, failed = 0;
function check(ok, what, detail = '') {
    if (ok) passed++, console.log(`ok   ${what}`);
    else failed++, console.log(`FAIL ${what}${detail ? ': ' + detail : ''}`);
    return ok;
}
function close(got, want) {
    return Number.isFinite(got) && Math.abs(got - want) <= TOL_ABS + TOL_REL * Math.abs(want);
}

/* ---- the walkthrough, from the README ---- */

const readme = readFileSync(join(SRC, 'README.md'), 'utf8');
const section = readme.split(/^## /m).find((s) => s.startsWith('Five minutes with curl'));
if (!section) throw new Error('README.md has no "Five minutes with curl" section');
const block = section.match(/```sh\n([\s\S]*?)```/)[1];
const after = section.slice(section.indexOf('```', section.indexOf('```sh') + 5) + 3);

// steps: "# N. title", then commands, then "# -> expectation" lines (with "#    " continuations)
const steps = [];
for (const line of block.split('\n')) {
    let m;
    if ((m = line.match(/^# (\d+)\. (.*)$/))) steps.push({ n: +m[1], title: m[2], cmd: '', out: [] });
    else if (!steps.length || line.trim() === '') continue;
    else if ((m = line.match(/^# -> ?(.*)$/))) steps.at(-1).out.push(m[1]);
    else if ((m = line.match(/^#\s+(.*)$/)) && steps.at(-1).out.length) steps.at(-1).out.push(m[1]);
    else steps.at(-1).cmd += line + '\n';
}
check(steps.length === 4 && steps.every((s, i) => s.n === i + 1 && s.cmd.includes('curl')),
      'the walkthrough has steps 1-4, each with a curl command', JSON.stringify(steps.map((s) => s.n)));

// numbers of a text in order ("[[-1.116],[1.737]]" -> [-1.116, 1.737])
const numbers = (t) => (t.match(/-?\d+(\.\d+)?(e-?\d+)?/g) || []).map(Number);
// keys named in an expectation line ("{"id":"d7e8…","state":…}" -> id, state)
const keys = (t) => [...t.matchAll(/"([a-z_]+)":/g)].map((m) => m[1]);
const field = (t, k) => { const m = t.match(new RegExp(`"${k}":(-?[\\d.e-]+)`)); return m ? +m[1] : NaN; };

/* ---- the server ---- */

const tmp = mkdtempSync(join(tmpdir(), 'walkthrough.'));
const env = { ...process.env, METASERVE_DB: join(tmp, 'metaserve.db'), METASERVE_PORT: '0',
              METASERVE_LISTEN: '127.0.0.1' };
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

const ids = {};
function run(cmd) {
    let c = cmd.replaceAll('localhost:8080', `127.0.0.1:${port}`)
        .replace(/curl -s/g, `curl -s -w '\\n%{http_code}'`);
    for (const [placeholder, id] of Object.entries(ids)) c = c.replaceAll(placeholder, id);
    const out = execFileSync('bash', ['-c', c], { encoding: 'utf8' });
    const nl = out.lastIndexOf('\n');
    const body = out.slice(0, nl);
    return { status: +out.slice(nl + 1), body, json: JSON.parse(body) };
}
const placeholder = (t) => (t.match(/"id":"([0-9a-f]+…)"/) || [])[1];

try {
    const [train, watch, adapt, predict] = steps;

    // 1. the job: 202 and the keys shown; its id replaces the placeholder from here on
    let r = run(train.cmd);
    const want1 = train.out.join(' ');
    check(r.status === numbers(want1)[0], `step 1: status ${r.status}`, want1);
    check(keys(want1).every((k) => k in r.json), 'step 1: the keys shown', r.body);
    check(r.json.state === 'queued', 'step 1: the job is queued', r.body);
    ids[placeholder(want1)] = r.json.id;

    // 2. polled until the job is done: the keys shown, and the metric named
    const want2 = watch.out.join(' ');
    const t0 = Date.now();
    do {
        r = run(watch.cmd);
        if (r.json.state === 'succeeded' || r.json.state === 'failed') break;
        await new Promise((res) => setTimeout(res, 250));
    } while (Date.now() - t0 < 180000);
    check(r.json.state === 'succeeded', 'step 2: the job succeeds', r.body);
    const missing = keys(want2).filter((k) => !(k in r.json) && !(k in (r.json.metrics || {})));
    check(missing.length === 0, 'step 2: the keys shown', `missing ${missing} in ${r.body}`);
    check(typeof r.json.metrics?.val_mse === 'number' && !('val_loss' in r.json.metrics),
          'step 2: the validation metric is val_mse', r.body);

    // 3. the support set is the task it names, and the losses are the ones shown
    const body3 = JSON.parse(adapt.cmd.match(/-d '([\s\S]*)'/)[1]);
    const truth = (x) => 2 * Math.sin(x - 0.5);
    const bad = body3.support.x.filter((x, i) => Math.abs(body3.support.y[i][0] - truth(x[0])) > 5e-4);
    check(body3.support.x.length === 10 && bad.length === 0,
          'step 3: support y = 2 sin(x - 0.5) to the 3 decimals shown', `wrong at x = ${bad}`);
    r = run(adapt.cmd);
    const want3 = adapt.out.join(' ');
    check(r.status === numbers(want3)[0], `step 3: status ${r.status}`, want3);
    for (const k of ['support_loss_before', 'support_loss_after'])
        check(close(r.json[k], field(want3, k)), `step 3: ${k} ${r.json[k]} vs the README's ${field(want3, k)}`);
    ids[placeholder(want3)] = r.json.id;

    // 4. adapted predictions as shown, closer to the truth than the meta-parameters', whose
    //    predictions (the README's second line, POST /v1/models/sine/predict) are as shown too
    const xs = numbers(predict.cmd.match(/-d '([\s\S]*)'/)[1]);
    const truthLine = numbers(predict.title.slice(predict.title.indexOf(':')));
    check(xs.length === 3 && truthLine.every((t, i) => Math.abs(t - truth(xs[i])) <= 5e-4),
          `step 4: the truth shown (${truthLine}) is 2 sin(x - 0.5) at ${xs}`);
    r = run(predict.cmd);
    const wantAdapted = numbers(predict.out[0]), wantMeta = numbers(predict.out.slice(1).join(' ').split(' give ')[1] || '');
    const got = r.json.y.map((v) => v[0]);
    check(r.json.adapted === true && got.every((g, i) => close(g, wantAdapted[i])),
          `step 4: adapted y ${got.map((v) => v.toFixed(3))} vs the README's ${wantAdapted}`);
    const metaCmd = predict.cmd.replace(/\/v1\/adaptations\/[^/]+\/predict/, '/v1/models/sine/predict');
    const meta = run(metaCmd).json.y.map((v) => v[0]);
    check(wantMeta.length === 3 && meta.every((g, i) => close(g, wantMeta[i])),
          `step 4: meta-parameter y ${meta.map((v) => v.toFixed(3))} vs the README's ${wantMeta}`);
    const err = (ys) => ys.reduce((s, y, i) => s + (y - truth(xs[i])) ** 2, 0);
    check(err(got) < err(meta), 'step 4: adapting brings the predictions closer to the truth',
          `squared error ${err(got)} vs ${err(meta)}`);

    // the paragraph after the block: a 2-wide x for this 1-input model
    const m = after.match(/`(\d{3}) \{"type":"([^"]+)","detail":"([^"]+)",…\}`/s);
    if (check(m, 'the validation example is in the README')) {
        const detail = m[3].replace(/\s+/g, ' ');
        const bad2 = `curl -s -X POST localhost:8080/v1/models/sine/predict -H 'Content-Type: application/json' ` +
            `-d '{"support": {"x": [[1, 2]], "y": [[0]]}, "x": [[0]]}'`;
        r = run(bad2);
        check(r.status === +m[1] && r.json.type === m[2] && r.json.detail === detail,
              `the validation example: ${r.status} "${r.json.detail}"`, `README: ${m[1]} "${detail}"`);
    }
} catch (e) {
    check(false, 'the walkthrough ran', e.stack);
} finally {
    server.kill('SIGTERM');
    await new Promise((res) => server.on('exit', res));
    rmSync(tmp, { recursive: true, force: true });
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
