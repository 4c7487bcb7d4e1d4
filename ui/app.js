// The dashboard: a single page with hash routes (#/models, #/models/NAME, #/jobs, #/jobs/ID,
// #/compare/ID,ID, #/datasets, #/try/regression, #/try/classification). Each page renders into
// <main> and returns a cleanup function (timers, event streams) run when the route changes.
import {
    api, listAll, h, fmt, fmtTime, fmtEta, action, showError, clearError, lineChart, legend,
    download, followJob, askKey,
} from './lib.js';
import { tryRegression, tryClassification } from './try.js';

const main = document.getElementById('main');
const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);

const SINE_CONFIG = {
    name: 'sine',
    architecture: { sizes: [1, 40, 40, 1], activation: 'relu', head: 'regression' },
    algorithm: 'maml',
    inner: { lr: 0.01, steps: 1 },
    outer: { optimizer: 'adam', lr: 0.001 },
    meta_batch: 10,
    iterations: 3000,
    seed: 1,
    tasks: { family: 'sinusoid', k_support: 10, k_query: 10 },
};

function stateBadge(s) {
    return h('span', { class: `state state-${s}` }, s);
}

function jobLink(id) {
    return h('a', { href: `#/jobs/${id}`, class: 'mono' }, id.slice(0, 8));
}

function table(head, rows, cls = {}) {
    return h('div', { class: 'table-wrap' }, h('table', {},
        h('thead', {}, h('tr', {}, head.map((c, i) => h('th', { scope: 'col', class: cls[i] }, c)))),
        h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colSpan: head.length, class: 'muted' }, 'none')))));
}

function archText(a) {
    return a ? `${a.sizes.join('–')} ${a.activation} ${a.head}` : '–';
}

function trainingText(c) {
    if (!c) return '–';
    const t = c.tasks || {};
    return `inner ${c.inner ? `${c.inner.steps} × lr ${c.inner.lr}` : '–'}, outer ${c.outer ? c.outer.optimizer : '–'}, ` +
        `${c.iterations} iterations × ${c.meta_batch} tasks, seed ${c.seed}; tasks ${t.family || 'dataset ' + (t.dataset || '').slice(0, 8)}`;
}

// The validation figure, named by what it measures: val_mse (regression) or val_accuracy.
const valKey = (o) => (o && 'val_accuracy' in o ? 'val_accuracy' : 'val_mse');
const valName = (o) => (valKey(o) === 'val_accuracy' ? 'accuracy' : 'mse');
const valOf = (m) => (m ? m[valKey(m)] : undefined);

function metricsText(m) {
    if (!m || m.meta_loss === undefined) return '–';
    return `meta ${fmt(m.meta_loss)} · val ${fmt(valOf(m))} (${valName(m)})`;
}

/* ---- models ---- */

async function pageModels() {
    const models = await listAll('/v1/models', 'models');
    main.replaceChildren(
        h('h1', {}, 'Models'),
        table(['name', 'latest', 'versions', 'algorithm', 'created'], models.map((m) =>
            h('tr', {},
                h('td', {}, h('a', { href: `#/models/${encodeURIComponent(m.name)}` }, m.name)),
                h('td', { class: 'num' }, m.latest_version),
                h('td', { class: 'num' }, m.versions),
                h('td', {}, m.algorithm),
                h('td', {}, fmtTime(m.created_at))))),
        h('p', { class: 'muted' }, 'Train a model on the Jobs page; it appears here when its job succeeds.'));
}

async function pageModel(name) {
    const enc = encodeURIComponent(name);
    const m = await api('GET', `/v1/models/${enc}`);
    const details = await Promise.all(m.versions.map((v) => api('GET', `/v1/models/${enc}/versions/${v.version}`)));
    const aliasesOf = (v) => Object.entries(m.aliases || {}).filter(([, to]) => to === v).map(([a]) => a);
    const rows = details.map((d) => h('tr', {},
        h('td', { class: 'num' }, d.version),
        h('td', {}, aliasesOf(d.version).map((a) => h('code', {}, a, ' '))),
        h('td', {}, d.algorithm),
        h('td', {}, archText(d.config && d.config.architecture)),
        h('td', { class: 'small' }, trainingText(d.config)),
        h('td', {}, metricsText(d.metrics)),
        h('td', {}, fmtTime(d.created_at), h('br'), d.job_id ? h('span', {}, 'job ', jobLink(d.job_id)) : 'imported',
            h('br'), h('span', { class: 'muted' }, `${d.n_params} parameters`)),
        h('td', {}, h('button', {
            type: 'button', class: 'small secondary', 'aria-label': `Export the weights of version ${d.version}`,
            onclick: (e) => action(e.target, async () => {
                const w = await api('GET', `/v1/models/${enc}@${d.version}/weights`);
                download(`${name}@${d.version}.weights.json`, w);
            }),
        }, 'Export weights'))));
    const aliasIn = h('input', { id: 'alias-name', value: Object.keys(m.aliases || {})[0] || 'prod', size: 12 });
    const versionIn = h('select', { id: 'alias-version' },
        m.versions.map((v) => h('option', { value: v.version, selected: v.version === m.latest_version }, `version ${v.version}`)));
    const status = h('span', { class: 'muted', role: 'status' });
    main.replaceChildren(
        h('h1', {}, h('a', { href: '#/models' }, 'Models'), ' / ', name),
        table(['version', 'aliases', 'algorithm', 'architecture', 'training', 'final metrics', 'provenance', 'weights'], rows,
            { 0: 'num' }),
        h('h2', {}, 'Move an alias'),
        h('div', { class: 'row' },
            h('label', { for: 'alias-name' }, 'Alias'), aliasIn,
            h('label', { for: 'alias-version' }, 'to'), versionIn,
            h('button', {
                type: 'button', id: 'alias-set',
                onclick: (e) => action(e.target, async () => {
                    const a = aliasIn.value.trim();
                    const r = await api('PUT', `/v1/models/${enc}/aliases/${encodeURIComponent(a)}`, { version: +versionIn.value });
                    await pageModel(name);
                    document.querySelector('#alias-status').textContent = `${r.name}@${r.alias} → version ${r.version}`;
                }),
            }, 'Set alias'),
            h('span', { id: 'alias-status', class: 'muted', role: 'status' })),
        status);
}

/* ---- jobs ---- */

function progressCell(j) {
    return h('td', {}, h('progress', { max: j.total || 1, value: j.iteration, 'aria-label': `progress of job ${j.id.slice(0, 8)}` }),
        h('span', { class: 'muted small' }, `${j.iteration} / ${j.total}`));
}

async function pageJobs() {
    const selected = new Set();
    const cfg = h('textarea', { id: 'job-config', rows: 12, spellcheck: false }, JSON.stringify(SINE_CONFIG, null, 2));
    const listBox = h('div', { id: 'job-list' });
    const compareBtn = h('button', {
        type: 'button', class: 'secondary', id: 'compare', disabled: true,
        onclick: () => { location.hash = `#/compare/${[...selected].join(',')}`; },
    }, 'Compare selected');
    let timer = null, alive = true;
    const refresh = async () => {
        const jobs = await listAll('/v1/jobs', 'jobs', 200);
        listBox.replaceChildren(table(['', 'job', 'model', 'state', 'progress', 'meta-loss', 'val-loss', 'created'],
            jobs.map((j) => h('tr', {},
                h('td', {}, h('input', {
                    type: 'checkbox', 'aria-label': `compare job ${j.id.slice(0, 8)}`, checked: selected.has(j.id),
                    onchange: (e) => {
                        if (e.target.checked) selected.add(j.id); else selected.delete(j.id);
                        compareBtn.disabled = selected.size < 1;
                    },
                })),
                h('td', {}, jobLink(j.id)),
                h('td', {}, j.model ? `${j.model.name}${j.model.version ? '@' + j.model.version : ''}` : '–'),
                h('td', {}, stateBadge(j.state)),
                progressCell(j),
                h('td', { class: 'num' }, fmt(j.metrics && j.metrics.meta_loss)),
                h('td', { class: 'num' }, fmt(valOf(j.metrics))),
                h('td', {}, fmtTime(j.created_at)))), { 5: 'num', 6: 'num' }));
        if (alive && jobs.some((j) => !TERMINAL.has(j.state))) timer = setTimeout(() => refresh().catch(showError), 2000);
    };
    main.replaceChildren(
        h('h1', {}, 'Jobs'),
        listBox,
        h('div', { class: 'row' }, compareBtn),
        h('h2', {}, 'Start meta-training'),
        h('div', { class: 'card' },
            h('label', { for: 'job-config' }, 'Training config (JSON; the example trains a sinusoid model in seconds)'),
            cfg,
            h('div', { class: 'row' }, h('button', {
                type: 'button', id: 'job-start',
                onclick: (e) => action(e.target, async () => {
                    const job = await api('POST', '/v1/jobs', cfg.value);
                    location.hash = `#/jobs/${job.id}`;
                }),
            }, 'Start job'))));
    await refresh();
    return () => { alive = false; clearTimeout(timer); };
}

/** Appends a job's new metric points (after lastStep) to curves {key: [[step, value]]}. */
async function fetchPoints(id, curves, lastStep) {
    let token = null, last = lastStep;
    do {
        const q = token ? `page_token=${encodeURIComponent(token)}` : `after_step=${last}`;
        const page = await api('GET', `/v1/jobs/${encodeURIComponent(id)}/metrics?${q}&page_size=1000`);
        for (const p of page.points) {
            (curves[p.key] = curves[p.key] || []).push([p.step, p.value]);
            if (p.step > last) last = p.step;
        }
        token = page.next_page_token;
    } while (token);
    return last;
}

async function pageJob(id) {
    const curves = {};
    let last = -1;
    const stats = h('div', { class: 'stats', id: 'job-stats' });
    const head = h('div', {});
    const lossChart = h('svg:svg', { id: 'loss-chart', role: 'img', 'aria-label': 'meta-loss and validation metric by iteration' });
    const cancel = h('button', {
        type: 'button', class: 'danger', id: 'job-cancel',
        onclick: (e) => action(e.target, async () => { await api('POST', `/v1/jobs/${encodeURIComponent(id)}/cancel`); await update(); }),
    }, 'Cancel job');
    const stat = (label, value) => h('div', { class: 'stat' }, h('b', {}, value), h('span', {}, label));
    const update = async () => {
        const j = await api('GET', `/v1/jobs/${encodeURIComponent(id)}`);
        last = await fetchPoints(id, curves, last);
        const m = j.metrics || {};
        head.replaceChildren(
            h('p', {}, stateBadge(j.state), ' ', j.model ? `model ${j.model.name}` : '',
                j.model && j.model.version ? h('span', {}, ' → ', h('a', { href: `#/models/${encodeURIComponent(j.model.name)}` }, `version ${j.model.version}`)) : '',
                j.error ? h('span', { class: 'state-failed' }, ` — ${j.error}`) : ''),
            h('progress', { max: j.total || 1, value: j.iteration, 'aria-label': 'training progress' }));
        stats.replaceChildren(
            stat('iteration', `${j.iteration} / ${j.total}`),
            stat('meta-loss', fmt(m.meta_loss)),
            stat(`validation (${valName(m)})`, fmt(valOf(m))),
            stat('tasks/s', fmt(m.tasks_per_s, 3)),
            stat('ETA', TERMINAL.has(j.state) ? '–' : fmtEta(m.eta_s)));
        cancel.hidden = TERMINAL.has(j.state);
        lineChart(lossChart, [
            { name: 'meta_loss', points: curves.meta_loss || [] },
            { name: valKey(curves), points: curves[valKey(curves)] || [] },
        ], { xlabel: 'iteration', ylabel: 'loss (log scale)', logY: true });
        return TERMINAL.has(j.state);
    };
    main.replaceChildren(
        h('h1', {}, h('a', { href: '#/jobs' }, 'Jobs'), ' / ', h('span', { class: 'mono' }, id.slice(0, 8))),
        head, stats,
        h('h2', {}, 'Loss curves'),
        legend(['meta-loss', 'validation']),
        lossChart,
        h('div', { class: 'row' }, cancel));
    await update();
    return followJob(id, () => update().catch((e) => { showError(e); return true; }));
}

async function pageCompare(ids) {
    const jobs = await Promise.all(ids.map((id) => api('GET', `/v1/jobs/${encodeURIComponent(id)}`)));
    const chart = h('svg:svg', { id: 'compare-chart', role: 'img', 'aria-label': 'validation metric of the selected jobs' });
    const series = [];
    for (const j of jobs) {
        const curves = {};
        await fetchPoints(j.id, curves, -1);
        series.push({ name: `${j.model ? j.model.name : ''} ${j.id.slice(0, 8)}`, points: curves[valKey(curves)] || [] });
    }
    lineChart(chart, series, { xlabel: 'iteration', ylabel: 'validation metric (log scale)', logY: true });
    main.replaceChildren(
        h('h1', {}, h('a', { href: '#/jobs' }, 'Jobs'), ' / compare'),
        legend(series.map((s) => s.name)),
        chart,
        table(['job', 'state', 'algorithm', 'final validation'], jobs.map((j) => h('tr', {},
            h('td', {}, jobLink(j.id)), h('td', {}, stateBadge(j.state)),
            h('td', {}, j.config ? j.config.algorithm : '–'),
            h('td', { class: 'num' }, j.metrics ? `${fmt(valOf(j.metrics))} ${valName(j.metrics)}` : '–')))));
}

/* ---- datasets ---- */

async function pageDatasets() {
    const ds = await listAll('/v1/datasets', 'datasets');
    const file = h('input', { type: 'file', id: 'dataset-file', accept: '.json,application/json' });
    const status = h('span', { id: 'dataset-status', role: 'status' });
    main.replaceChildren(
        h('h1', {}, 'Datasets'),
        table(['name', 'id', 'kind', 'rows', 'x / y width', 'tasks or classes', 'held-out classes', 'size', 'created'],
            ds.map((d) => h('tr', {},
                h('td', {}, d.name), h('td', { class: 'mono' }, d.id.slice(0, 8)), h('td', {}, d.kind),
                h('td', { class: 'num' }, d.n_rows), h('td', { class: 'num' }, `${d.x_dim} / ${d.y_dim}`),
                h('td', { class: 'num' }, d.kind === 'tasks' ? `${d.n_tasks} tasks` : `${d.n_classes} classes`),
                h('td', {}, d.test_classes ? d.test_classes.join(', ') : '–'),
                h('td', { class: 'num' }, `${d.bytes} B`), h('td', {}, fmtTime(d.created_at)))),
            { 3: 'num', 4: 'num', 5: 'num', 7: 'num' }),
        h('h2', {}, 'Upload a dataset'),
        h('div', { class: 'card' },
            h('p', { class: 'muted' }, 'A JSON file: {"name", "kind": "tasks", "tasks": [{"x", "y"}, …]} or ',
                '{"name", "kind": "classes", "x", "labels", "test_classes"}.'),
            h('div', { class: 'row' }, h('label', { for: 'dataset-file' }, 'File'), file,
                h('button', {
                    type: 'button', id: 'dataset-upload',
                    onclick: (e) => action(e.target, async () => {
                        if (!file.files.length) throw new Error('choose a JSON file first');
                        const d = await api('POST', '/v1/datasets', await file.files[0].text());
                        await pageDatasets();
                        document.getElementById('dataset-status').textContent = `uploaded ${d.name} (${d.id})`;
                    }),
                }, 'Upload')),
            status));
}

/* ---- the router ---- */

let cleanup = null;

async function route() {
    if (cleanup) cleanup();
    cleanup = null;
    clearError();
    const path = (location.hash.replace(/^#\/?/, '') || 'models').split('/').map(decodeURIComponent);
    const nav = path[0] === 'try' ? `try/${path[1]}` : path[0] === 'compare' ? 'jobs' : path[0];
    for (const a of document.querySelectorAll('nav a'))
        if (a.dataset.nav === nav) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
    main.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
    try {
        let c;
        if (path[0] === 'models' && path[1]) c = await pageModel(path[1]);
        else if (path[0] === 'models') c = await pageModels();
        else if (path[0] === 'jobs' && path[1]) c = await pageJob(path[1]);
        else if (path[0] === 'jobs') c = await pageJobs();
        else if (path[0] === 'compare') c = await pageCompare(path[1].split(',').filter(Boolean));
        else if (path[0] === 'datasets') c = await pageDatasets();
        else if (path[0] === 'try' && path[1] === 'classification') c = await tryClassification(main);
        else if (path[0] === 'try') c = await tryRegression(main);
        else main.replaceChildren(h('h1', {}, 'Not found'), h('p', {}, h('a', { href: '#/models' }, 'Models')));
        cleanup = typeof c === 'function' ? c : null;
        document.body.dataset.page = nav;
        document.body.dataset.ready = String(Date.now());
    } catch (e) {
        main.replaceChildren(h('h1', {}, 'Could not load this page'));
        showError(e);
        document.body.dataset.ready = String(Date.now());
    }
}

document.getElementById('key-button').addEventListener('click', async () => {
    await askKey('Enter the API key to use from this tab (it is kept in sessionStorage only).');
    route();
});
window.addEventListener('hashchange', route);
route();
