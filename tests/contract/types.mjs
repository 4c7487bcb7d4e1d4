// The contract as a generated client sees it: TypeScript types generated from api/openapi.yaml
// with openapi-typescript, and a file that assigns to them
//   - every example of the spec: request bodies, responses (by operation, status and media
//     type) and the schemas' own `examples`;
//   - every JSON body of the README: the curl walkthrough's request bodies, the Python client's
//     job, the training config shown for `POST /v1/jobs`;
//   - the request and response bodies of a journey through every route of the real server
//     (journey.mjs), 2xx and errors alike (every operation of the spec must have a 2xx in it);
// type-checked with `tsc --noEmit --strict`. An object literal assigned to a type is checked
// for missing required fields and for fields the type does not have, so a field the server
// sends and the spec does not declare fails, and so does a required field the spec declares
// and the server omits, or a default-valued request field the generated type makes required.
// An operation or status that the spec lacks fails too (its type does not exist).
//
// Environment: METASERVE_BIN, METASERVE_SRC as in journey.mjs; CONTRACT_KEEP=1 keeps the
// generated files (their directory is printed). Needs tools/contract's npm packages
// (scripts/contract-tools.sh installs them). Exits non-zero on any failure.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { journey, SRC, startServer } from './journey.mjs';

const TOOLS = join(SRC, 'tools/contract');
const bin = (name) => join(TOOLS, 'node_modules/.bin', name);
const YAML = createRequire(join(TOOLS, 'package.json'))('yaml');
const spec = YAML.parse(readFileSync(join(SRC, 'api/openapi.yaml'), 'utf8'));

const lines = []; // the .ts file's body
let n = 0;
const lit = (v) => JSON.stringify(v, null, 1);
// one assignment of value to type, with where it came from
function assign(type, value, from) {
    lines.push(`// ${from.replace(/\n/g, ' ')}`, `export const v${++n}: ${type} = ${lit(value)};`);
}
const op = (path, method) => `paths[${lit(path)}][${lit(method.toLowerCase())}]`;
const reqType = (path, method) => `NonNullable<${op(path, method)}["requestBody"]>["content"]["application/json"]`;
const resType = (path, method, status, type) =>
    `${op(path, method)}["responses"][${/^\d+$/.test(status) ? status : lit(status)}]["content"][${lit(type)}]`;

/* ---- the spec's examples ---- */

const deref = (o) => {
    while (o && o.$ref) o = o.$ref.slice(2).split('/').reduce((a, k) => a[k], spec);
    return o;
};
function examplesOf(media) {
    const out = [];
    for (const [k, e] of Object.entries(media.examples || {})) out.push([k, deref(e).value]);
    if ('example' in media) out.push(['example', media.example]);
    return out;
}
let specExamples = 0;
for (const [path, item] of Object.entries(spec.paths)) {
    for (const [method, o] of Object.entries(item)) {
        if (method === 'parameters') continue;
        for (const [ct, media] of Object.entries(deref(o.requestBody)?.content || {})) {
            // raw bodies (OIP's binary tensors) have no JSON type to check
            if (ct === 'application/octet-stream') continue;
            if (ct !== 'application/json') throw new Error(`${method} ${path}: request media type ${ct}`);
            for (const [k, v] of examplesOf(media))
                assign(reqType(path, method), v, `spec: ${method} ${path} request example ${k}`), specExamples++;
        }
        for (const [status, r] of Object.entries(o.responses)) {
            for (const [ct, media] of Object.entries(deref(r).content || {})) {
                if (!/json$/.test(ct)) continue;
                for (const [k, v] of examplesOf(media))
                    assign(resType(path, method, status, ct), v, `spec: ${method} ${path} ${status} example ${k}`), specExamples++;
            }
        }
    }
}
for (const [name, s] of Object.entries(spec.components.schemas))
    for (const [i, v] of (s.examples || []).entries())
        assign(`components["schemas"][${lit(name)}]`, v, `spec: schema ${name} example ${i}`), specExamples++;

/* ---- the README's bodies ---- */

const readme = readFileSync(join(SRC, 'README.md'), 'utf8');
let readmeBodies = 0;
// curl ... -X POST localhost:8080/PATH ... -d '{...}'
for (const m of readme.matchAll(/curl -s -X (POST|PUT) localhost:8080(\/\S+)(?:'[^']*'|\\\n|[^'\n])*?-d '([^']*)'/g)) {
    const [, method, path, body] = m;
    const template = Object.keys(spec.paths).find((t) =>
        new RegExp('^' + t.replace(/\{[^}]+\}/g, '[^/]+') + '$').test(path));
    if (!template) throw new Error(`README: ${method} ${path} is no path of the spec`);
    assign(reqType(template, method), JSON.parse(body), `README: curl ${method} ${path}`), readmeBodies++;
}
if (readmeBodies < 3) throw new Error(`README: ${readmeBodies} curl bodies, expected the walkthrough's 3`);
// the Python journey's job: ms.create_job({...}) (its dict is JSON)
for (const m of readme.matchAll(/create_job\((\{[\s\S]*?\}\})\)/g))
    assign(reqType('/v1/jobs', 'post'), JSON.parse(m[1]), 'README: create_job'), readmeBodies++;
// the training config shown as ```json
for (const m of readme.matchAll(/```json\n([\s\S]*?)```/g))
    assign(reqType('/v1/jobs', 'post'), JSON.parse(m[1]), 'README: the training config'), readmeBodies++;

/* ---- a journey through the real server ---- */

let failed = 0;
const server = await startServer();
let rec;
try {
    rec = await journey(server.url);
} finally {
    await server.stop();
}
for (const f of rec.failures) console.log(`FAIL ${f}`), failed++;
let recorded = 0;
for (const r of rec.records) {
    const [method, path] = r.op;
    const what = `server: ${method} ${r.path} ${r.status}`;
    // (a request that breaks the contract on purpose is not one; the 413's big body is left out)
    if (r.req !== undefined && !r.bad && JSON.stringify(r.req).length < 10000)
        assign(reqType(path, method), r.req, `${what} request`), recorded++;
    if (r.query && !r.bad) {
        const q = Object.fromEntries(Object.entries(r.query).map(([k, v]) => [k, k === 'page_token' ? v : +v]));
        assign(`NonNullable<${op(path, method)}["parameters"]["query"]>`, q, `${what} query`), recorded++;
    }
    if (/json$/.test(r.type)) assign(resType(path, method, r.status, r.type), r.res, what), recorded++;
    else if (r.status === 204) lines.push(`// ${what}`, `export type T${++n} = ${op(path, method)}["responses"][204];`), recorded++;
    else if (r.type) lines.push(`// ${what}`, `export type T${++n} = ${resType(path, method, r.status, r.type)};`), recorded++;
}

// every operation of the spec had a success in the journey (2xx; 3xx for the redirects)
for (const [path, item] of Object.entries(spec.paths))
    for (const method of Object.keys(item).filter((k) => k !== 'parameters'))
        if (!rec.records.some((r) => r.op[0] === method.toUpperCase() && r.op[1] === path && r.status < 400))
            console.log(`FAIL the journey has no 2xx of ${method.toUpperCase()} ${path}`), failed++;

/* ---- generate and check ---- */

const dir = mkdtempSync(join(tmpdir(), 'contract-types.'));
try {
    execFileSync(bin('openapi-typescript'), [join(SRC, 'api/openapi.yaml'), '-o', join(dir, 'api.d.ts')],
                 { stdio: ['ignore', 'ignore', 'inherit'] });
    writeFileSync(join(dir, 'check.ts'),
                  'import type { components, paths } from "./api";\n\n' + lines.join('\n') + '\n');
    console.log(`checking ${specExamples} spec examples, ${readmeBodies} README bodies and ` +
                `${recorded} recorded requests and responses (${rec.records.length} exchanges)`);
    try {
        execFileSync(bin('tsc'), ['--noEmit', '--strict', '--target', 'es2022', '--module', 'preserve',
                                  '--moduleResolution', 'bundler', '--pretty', 'false', join(dir, 'check.ts')],
                     { encoding: 'utf8', cwd: dir });
        console.log('ok   tsc accepts every example and recorded body');
    } catch (e) {
        failed++;
        // each error with the comment that says where its value came from
        const src = readFileSync(join(dir, 'check.ts'), 'utf8').split('\n');
        for (const line of (e.stdout || String(e)).split('\n').filter(Boolean)) {
            const m = line.match(/check\.ts\((\d+),/);
            let from = '';
            if (m) for (let i = +m[1] - 1; i >= 0; i--) if (src[i].startsWith('// ')) { from = src[i].slice(3); break; }
            console.log(`FAIL ${line}${from ? `\n       (${from})` : ''}`);
        }
    }
} finally {
    if (process.env.CONTRACT_KEEP) console.log(`kept ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
}
console.log(failed ? `${failed} failed` : 'passed');
process.exit(failed ? 1 : 0);
