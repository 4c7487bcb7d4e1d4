// The dashboard's plumbing: the API client (Bearer key from sessionStorage, asked for once on a
// 401), problem documents shown to the user, a DOM builder that never parses HTML, the line chart
// (SVG), and the job event stream (Server-Sent Events when the server's contract has them, else
// polling). Everything goes through the public v1 routes of /openapi.yaml.

const KEY_STORE = 'metaserve.api_key';
// The API's root: the page is served at <root>/ui/, and behind a gateway that serves the service
// under a prefix (deploy/nginx.conf: /metaserve/) the API is under the same prefix.
const ROOT = location.pathname.replace(/\/ui\/[^/]*$/, '');

/** An API failure: the problem document's status, title and detail. */
export class ApiError extends Error {
    constructor(status, problem) {
        const p = problem || {};
        super(`${status} ${p.title || 'Error'}${p.detail ? ': ' + p.detail : ''}`);
        this.status = status;
        this.problem = p;
    }
}

export function apiKey() {
    return sessionStorage.getItem(KEY_STORE) || '';
}

/* ---- the key prompt: one at a time, however many requests got a 401 ---- */

let keyPrompt = null;

/** Shows the key dialog; resolves to the key entered, or '' when cancelled. */
export function askKey(why) {
    if (keyPrompt) return keyPrompt;
    const dlg = document.getElementById('key-dialog');
    const input = document.getElementById('key-input');
    document.getElementById('key-why').textContent = why || 'This server needs an API key.';
    input.value = apiKey();
    keyPrompt = new Promise((resolve) => {
        const done = (key) => {
            dlg.removeEventListener('cancel', onCancel);
            form.removeEventListener('submit', onKey);
            forget.removeEventListener('click', onForget);
            cancel.removeEventListener('click', onCancel);
                        if (dlg.open) dlg.close();
            keyPrompt = null;
            resolve(key);
        };
        const form = document.getElementById('key-form');
        const forget = document.getElementById('key-forget');
        const cancel = document.getElementById('key-cancel');
        const onOk = () => {
            const k = input.value.trim();
            if (k) sessionStorage.setItem(KEY_STORE, k);
            done(k);
        };
        const onForget = () => {
            sessionStorage.removeItem(KEY_STORE);
            done('');
        };
        const onCancel = (e) => {
            if (e) e.preventDefault();
            done('');
        };
        // the form is never sent: Enter or "Use key" submits it, and the submit stays here
        const onKey = (e) => {
            e.preventDefault();
            onOk();
        };
        dlg.addEventListener('cancel', onCancel);
        form.addEventListener('submit', onKey);
        forget.addEventListener('click', onForget);
        cancel.addEventListener('click', onCancel);
                dlg.showModal();
        input.focus();
    });
    return keyPrompt;
}

/* ---- requests ---- */

function headers(json) {
    const h = {};
    const k = apiKey();
    if (k) h.Authorization = 'Bearer ' + k;
    if (json) h['Content-Type'] = 'application/json';
    return h;
}

async function problemOf(res) {
    try {
        return await res.json();
    } catch {
        return { title: res.statusText || 'Error' };
    }
}

/**
 * Sends a request to the API and returns the parsed JSON (null for 204). body: an object (sent
 * as JSON) or a string (sent as it is, as JSON). A 401 asks for a key and retries with it;
 * any other failure throws an ApiError with the problem document.
 */
export async function api(method, path, body, opts = {}) {
    const text = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    for (let attempt = 0; ; attempt++) {
        const res = await fetch(ROOT + path, { method, headers: headers(text !== undefined), body: text });
        if (res.status === 401 && attempt < 3) {
            const p = await problemOf(res);
            const k = await askKey(p.detail ? `The server says: ${p.detail}.` : undefined);
            if (k) continue;
            throw new ApiError(401, p);
        }
        if (!res.ok) throw new ApiError(res.status, await problemOf(res));
        if (opts.raw) return res;
        if (res.status === 204) return null;
        return res.json();
    }
}

/** Every item of a paginated list (following next_page_token), up to max items. */
export async function listAll(path, key, max = 1000) {
    const out = [];
    let token = null;
    do {
        const sep = path.includes('?') ? '&' : '?';
        const page = await api('GET', `${path}${sep}page_size=${Math.min(max, 1000)}` +
            (token ? `&page_token=${encodeURIComponent(token)}` : ''));
        out.push(...page[key]);
        token = page.next_page_token;
    } while (token && out.length < max);
    return out;
}

/* ---- showing errors ---- */

/** Shows an error (an ApiError's problem detail, or any exception's message) above the page. */
export function showError(e) {
    const box = document.getElementById('error');
    box.textContent = e instanceof ApiError ? e.message :
        `${e && e.message ? e.message : e}`;
    box.hidden = false;
}

export function clearError() {
    const box = document.getElementById('error');
    box.hidden = true;
    box.textContent = '';
}

/** Runs an async action from a button: disabled while it runs, errors shown. */
export async function action(button, fn) {
    if (button) button.disabled = true;
    try {
        clearError();
        return await fn();
    } catch (e) {
        showError(e);
    } finally {
        if (button) button.disabled = false;
    }
}

/* ---- DOM ---- */

/** Creates an element: attrs (on* keys add listeners; class, for, data-*; the rest as
 *  properties or attributes), children as nodes or text. Never parses HTML. */
export function h(tag, attrs, ...children) {
    const el = tag.startsWith('svg:') ?
        document.createElementNS('http://www.w3.org/2000/svg', tag.slice(4)) :
        document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
        if (v === undefined || v === null || v === false) continue;
        if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
        else if (k === 'class' || k === 'for' || k.startsWith('data-') || k.startsWith('aria-') ||
                 el instanceof SVGElement || k === 'role' || k === 'scope')
            el.setAttribute(k, v === true ? '' : v);
        else el[k] = v;
    }
    for (const c of children.flat(Infinity)) {
        if (c === undefined || c === null || c === false) continue;
        el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
}

export function fmt(v, digits = 4) {
    if (v === null || v === undefined || Number.isNaN(v)) return '–';
    if (typeof v !== 'number') return String(v);
    if (Number.isInteger(v) && Math.abs(v) < 1e9) return String(v);
    const a = Math.abs(v);
    return a !== 0 && (a < 1e-3 || a >= 1e6) ? v.toExponential(2) : v.toPrecision(digits);
}

export function fmtTime(s) {
    return s ? s.replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '–';
}

export function fmtEta(s) {
    if (s === null || s === undefined) return '–';
    s = Math.round(s);
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
    return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/** Starts a download of a JSON value as a file. */
export function download(name, value) {
    const url = URL.createObjectURL(new Blob([JSON.stringify(value, null, 1)], { type: 'application/json' }));
    const a = h('a', { href: url, download: name });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
}

/* ---- the line chart ---- */

function ticks(lo, hi, n) {
    const span = hi - lo || 1;
    const step0 = span / n, mag = 10 ** Math.floor(Math.log10(step0));
    const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= step0) || 10 * mag;
    const out = [];
    for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) out.push(+t.toPrecision(12));
    return out;
}

/**
 * Draws series [{name, points: [[x, y], ...]}] into the <svg> el as a line chart. The point
 * count of each series is left in el's data-points attribute ({"name": n}) for tests and tools.
 * opts: {xlabel, ylabel, logY, width, height (of the viewBox)}.
 */
export function lineChart(el, series, opts = {}) {
    const W = opts.width || 800, H = opts.height || 300, L = 56, R = 24, T = 12, B = 34;
    el.setAttribute('viewBox', `0 0 ${W} ${H}`);
    el.setAttribute('class', 'chart');
    el.replaceChildren();
    const ty = (y) => (opts.logY ? Math.log10(Math.max(y, 1e-12)) : y);
    const all = series.flatMap((s) => s.points.filter((p) => Number.isFinite(p[1])));
    el.setAttribute('data-points', JSON.stringify(Object.fromEntries(series.map((s) => [s.name, s.points.length]))));
    if (!all.length) {
        el.append(h('svg:text', { x: W / 2, y: H / 2, 'text-anchor': 'middle' }, 'no points yet'));
        return;
    }
    let x0 = Math.min(...all.map((p) => p[0])), x1 = Math.max(...all.map((p) => p[0]));
    let y0 = Math.min(...all.map((p) => ty(p[1]))), y1 = Math.max(...all.map((p) => ty(p[1])));
    if (x0 === x1) x1 = x0 + 1;
    if (y0 === y1) (y0 -= 0.5), (y1 += 0.5);
    const pad = (y1 - y0) * 0.05;
    (y0 -= pad), (y1 += pad);
    const sx = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
    const sy = (y) => T + (1 - (ty(y) - y0) / (y1 - y0)) * (H - T - B);
    for (const t of ticks(y0, y1, 5)) {
        const yy = T + (1 - (t - y0) / (y1 - y0)) * (H - T - B);
        el.append(h('svg:line', { x1: L, x2: W - R, y1: yy, y2: yy, class: 'grid' }));
        el.append(h('svg:text', { x: L - 4, y: yy + 4, 'text-anchor': 'end' }, opts.logY ? fmt(10 ** t, 2) : fmt(t, 3)));
    }
    for (const t of ticks(x0, x1, 6)) {
        el.append(h('svg:text', { x: sx(t), y: H - B + 16, 'text-anchor': 'middle' }, fmt(t, 4)));
    }
    el.append(h('svg:line', { x1: L, x2: L, y1: T, y2: H - B, class: 'axis' }));
    el.append(h('svg:line', { x1: L, x2: W - R, y1: H - B, y2: H - B, class: 'axis' }));
    if (opts.xlabel) el.append(h('svg:text', { x: (L + W - R) / 2, y: H - 4, 'text-anchor': 'middle' }, opts.xlabel));
    if (opts.ylabel) el.append(h('svg:text', { x: 12, y: T + 10 }, opts.ylabel));
    series.forEach((s, i) => {
        const pts = s.points.filter((p) => Number.isFinite(p[1]));
        if (!pts.length) return;
        el.append(h('svg:polyline', {
            class: `series s${i % 6}`, 'data-name': s.name,
            points: pts.map((p) => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(' '),
        }));
    });
}

/** A legend for lineChart's series. */
export function legend(names) {
    return h('div', { class: 'legend' }, names.map((n, i) => h('span', {}, h('i', { class: `l${i % 6}` }), n)));
}

/* ---- job events ---- */

let eventsDeclared = null;

/** Whether this server's contract has GET /v1/jobs/{id}/events (read once from /openapi.yaml). */
async function hasEvents() {
    if (eventsDeclared === null) {
        try {
            const res = await fetch(`${ROOT}/openapi.yaml`);
            eventsDeclared = res.ok && (await res.text()).includes('\n  /v1/jobs/{id}/events:');
        } catch {
            eventsDeclared = false;
        }
    }
    return eventsDeclared;
}

/**
 * Calls onChange() whenever job id may have changed: on each event of its Server-Sent Events
 * stream (EventSource without a key; fetch with the Bearer header and a stream reader with one),
 * or, when the server has no event stream or it fails, once a second. onChange returns true once
 * the job has finished; then the stream or the polling stops. Returns a function that stops.
 */
export function followJob(id, onChange) {
    let stopped = false, timer = null, source = null, abort = null;
    const stop = () => {
        stopped = true;
        if (timer) clearTimeout(timer);
        if (source) source.close();
        if (abort) abort.abort();
    };
    let busy = false, again = false;
    const tick = async () => {
        if (busy) return void (again = true);
        busy = true;
        try {
            do {
                again = false;
                if (!stopped && (await onChange())) stop();
            } while (again && !stopped);
        } finally {
            busy = false;
        }
    };
    const poll = async () => {
        if (stopped) return;
        await tick();
        if (!stopped) timer = setTimeout(poll, 1000);
    };
    const url = `${ROOT}/v1/jobs/${encodeURIComponent(id)}/events`;
    (async () => {
        if (!(await hasEvents()) || stopped) return poll();
        if (!apiKey()) {
            source = new EventSource(url);
            for (const type of ['progress', 'state', 'done']) source.addEventListener(type, tick);
            source.onerror = () => {
                // a failed or ended stream: the figures come from polling from now on
                source.close();
                source = null;
                poll();
            };
            return tick();
        }
        abort = new AbortController();
        try {
            const res = await fetch(url, { headers: headers(false), signal: abort.signal });
            if (!res.ok || !res.body) return poll();
            await tick();
            const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
            let buf = '';
            for (;;) {
                const { value, done } = await reader.read();
                if (done) break;
                buf += value;
                let at;
                while ((at = buf.search(/\r?\n\r?\n/)) >= 0) {
                    const block = buf.slice(0, at);
                    buf = buf.slice(at).replace(/^\r?\n\r?\n/, '');
                    if (/^(event|data):/m.test(block)) tick();
                }
            }
            if (!stopped) poll();
        } catch {
            if (!stopped) poll();
        }
    })();
    return stop;
}
