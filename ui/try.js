// The "try it" pages: adapt a model by hand.
//
// Regression (1-D input): click on the canvas to place support points, or draw them from a random
// sinusoid (its true curve dashed); "Adapt" calls POST /v1/models/{ref}/predict with the support
// set inline and steps = 0, 1, ..., K (stateless; steps = 0 is the meta-parameters' curve), at a
// grid of x and at the support x, so the slider can show the curve after each inner step and the
// support loss (MSE, the models' regression loss) at each; then POST /v1/models/{ref}/adapt with
// steps = K stores the adaptation and reports the server's support loss before and after.
// The canvas keeps what it draws readable: data-curve-x / data-curve-y (the drawn curve's sample
// points at the slider's step), data-step, data-support ([[x, y], ...]) and data-model.
//
// Classification: labelled rows (pasted, loaded from a file, or made up as clusters) adapt the
// model, and the query rows' predicted labels and class probabilities are shown.
import { api, listAll, h, fmt, action, lineChart } from './lib.js';

const X0 = -5, X1 = 5, Y0 = -6, Y1 = 6, GRID = 101;

/** The models whose latest version fits: [{ref, name, version, arch, hyper}]. */
async function modelsWhere(pred) {
    const models = await listAll('/v1/models', 'models');
    const out = [];
    for (const m of models) {
        const v = await api('GET', `/v1/models/${encodeURIComponent(m.name)}/versions/${m.latest_version}`);
        const arch = v.config && v.config.architecture;
        if (arch && pred(arch)) out.push({ ref: `${m.name}@${m.latest_version}`, arch, hyper: v.hyper || {} });
    }
    return out;
}

function modelSelect(id, models) {
    return h('select', { id }, models.map((m) => h('option', { value: m.ref }, `${m.ref} (${m.arch.sizes.join('–')} ${m.arch.activation})`)));
}

function numInput(id, value, min, max, step) {
    return h('input', { id, type: 'number', value, min, max, step, size: 6 });
}

/* ---- regression ---- */

export async function tryRegression(main) {
    const models = await modelsWhere((a) => a.head === 'regression' && a.sizes[0] === 1 && a.sizes.at(-1) === 1);
    const canvas = h('canvas', { class: 'pad', id: 'pad', width: 640, height: 400, tabIndex: 0,
        'aria-label': 'support set: click to add a point at that (x, y); or move the cross-hair with the arrow keys and press Enter' });
    const select = modelSelect('reg-model', models);
    const steps = numInput('reg-steps', 5, 1, 100, 1);
    const lr = h('input', { id: 'reg-lr', type: 'number', min: 0, max: 10, step: 'any', size: 6, placeholder: 'model' });
    const slider = h('input', { id: 'reg-slider', type: 'range', min: 0, max: 0, value: 0, step: 1, disabled: true });
    const sliderLabel = h('output', { id: 'reg-step-label', for: 'reg-slider' }, 'step 0');
    const lossChart = h('svg:svg', { id: 'reg-loss', role: 'img', 'aria-label': 'support loss by inner step' });
    const summary = h('p', { id: 'reg-summary', role: 'status', class: 'muted' }, 'Click on the canvas to place support points, or draw them from a random sinusoid.');
    let support = [], truth = null, result = null;

    const px = (x) => ((x - X0) / (X1 - X0)) * canvas.width;
    const py = (y) => (1 - (y - Y0) / (Y1 - Y0)) * canvas.height;
    const curve = (ctx, xs, ys, color, width, dash = []) => {
        ctx.beginPath();
        ctx.setLineDash(dash);
        ctx.strokeStyle = color;
        ctx.lineWidth = width;
        xs.forEach((x, i) => (i ? ctx.lineTo(px(x), py(ys[i])) : ctx.moveTo(px(x), py(ys[i]))));
        ctx.stroke();
        ctx.setLineDash([]);
    };
    const draw = () => {
        const ctx = canvas.getContext('2d');
        ctx.clearRect(0, 0, canvas.width, canvas.height);
        ctx.strokeStyle = '#eceff2';
        ctx.lineWidth = 1;
        for (let x = X0; x <= X1; x++) ctx.beginPath(), ctx.moveTo(px(x), 0), ctx.lineTo(px(x), canvas.height), ctx.stroke();
        for (let y = Y0; y <= Y1; y += 2) ctx.beginPath(), ctx.moveTo(0, py(y)), ctx.lineTo(canvas.width, py(y)), ctx.stroke();
        ctx.strokeStyle = '#8a939e';
        ctx.beginPath(), ctx.moveTo(px(0), 0), ctx.lineTo(px(0), canvas.height), ctx.stroke();
        ctx.beginPath(), ctx.moveTo(0, py(0)), ctx.lineTo(canvas.width, py(0)), ctx.stroke();
        ctx.fillStyle = '#5b6470';
        ctx.font = '12px system-ui, sans-serif';
        for (let x = X0; x <= X1; x++) if (x) ctx.fillText(String(x), px(x) + 2, py(0) + 13);
        for (let y = Y0; y <= Y1; y += 2) if (y) ctx.fillText(String(y), px(0) + 3, py(y) - 2);
        if (truth) {
            const xs = Array.from({ length: GRID }, (_, i) => X0 + ((X1 - X0) * i) / (GRID - 1));
            curve(ctx, xs, xs.map((x) => truth.a * Math.sin(x - truth.p)), '#2b8a3e', 2, [6, 5]);
        }
        if (result) {
            curve(ctx, result.xs, result.ys[0], '#9aa3ad', 2);
            const k = +slider.value;
            curve(ctx, result.xs, result.ys[k], '#1f6feb', 3);
            canvas.dataset.curveX = JSON.stringify(result.xs);
            canvas.dataset.curveY = JSON.stringify(result.ys[k]);
            canvas.dataset.step = String(k);
            sliderLabel.textContent = `step ${k} of ${result.ys.length - 1}: support loss ${fmt(result.loss[k])}`;
        } else {
            delete canvas.dataset.curveX;
            delete canvas.dataset.curveY;
            delete canvas.dataset.step;
        }
        if (document.activeElement === canvas) {
            ctx.strokeStyle = '#12263f';
            ctx.lineWidth = 1;
            const [cx, cy] = [px(cursor[0]), py(cursor[1])];
            ctx.beginPath(), ctx.moveTo(cx - 9, cy), ctx.lineTo(cx + 9, cy), ctx.moveTo(cx, cy - 9), ctx.lineTo(cx, cy + 9), ctx.stroke();
        }
        ctx.fillStyle = '#d9480f';
        for (const [x, y] of support) ctx.beginPath(), ctx.arc(px(x), py(y), 5, 0, 2 * Math.PI), ctx.fill();
        canvas.dataset.support = JSON.stringify(support);
        canvas.dataset.model = select.value;
    };
    const changed = () => {
        result = null;
        slider.disabled = true;
        lineChart(lossChart, [{ name: 'support_loss', points: [] }], { xlabel: 'inner step', ylabel: 'support MSE', width: 420, height: 300 });
        draw();
    };
    canvas.addEventListener('click', (e) => {
        const r = canvas.getBoundingClientRect();
        const x = X0 + ((e.clientX - r.left) / r.width) * (X1 - X0);
        const y = Y1 - ((e.clientY - r.top) / r.height) * (Y1 - Y0);
        support.push([+x.toFixed(4), +y.toFixed(4)]);
        changed();
    });
    // keyboard: arrows move a cross-hair (drawn while the canvas has focus), Enter or Space
    // places a point there, Backspace removes the last one
    let cursor = [0, 0];
    canvas.addEventListener('keydown', (e) => {
        const step = e.shiftKey ? 1 : 0.25;
        const moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, step], ArrowDown: [0, -step] };
        if (moves[e.key]) {
            cursor = [Math.min(X1, Math.max(X0, cursor[0] + moves[e.key][0])), Math.min(Y1, Math.max(Y0, cursor[1] + moves[e.key][1]))];
            draw();
        } else if (e.key === 'Enter' || e.key === ' ') {
            support.push([+cursor[0].toFixed(4), +cursor[1].toFixed(4)]);
            changed();
        } else if (e.key === 'Backspace') {
            support.pop();
            changed();
        } else return;
        e.preventDefault();
    });
    canvas.addEventListener('focus', () => draw());
    canvas.addEventListener('blur', () => draw());
    slider.addEventListener('input', draw);
    select.addEventListener('change', changed);

    const adapt = async () => {
        if (!models.length) throw new Error('no 1-D regression model yet: train one on the Jobs page');
        if (support.length < 1) throw new Error('support: place at least one point on the canvas');
        const K = Math.round(+steps.value);
        const xs = Array.from({ length: GRID }, (_, i) => +(X0 + ((X1 - X0) * i) / (GRID - 1)).toFixed(4));
        const sup = { x: support.map((p) => [p[0]]), y: support.map((p) => [p[1]]) };
        const extra = lr.value !== '' ? { lr: +lr.value } : {};
        const ref = encodeURIComponent(select.value);
        const x = xs.concat(support.map((p) => p[0])).map((v) => [v]);
        const preds = await Promise.all(Array.from({ length: K + 1 }, (_, j) =>
            // step 0 is the meta-parameters themselves: predict without a support set (the API
            // refuses steps 0 with one)
            api('POST', `/v1/models/${ref}/predict`, j === 0 ? { x } : { x, support: sup, steps: j, ...extra })));
        const ys = preds.map((p) => p.y.slice(0, GRID).map((r) => r[0]));
        const loss = preds.map((p) => {
            const at = p.y.slice(GRID).map((r) => r[0]);
            return at.reduce((s, v, i) => s + (v - support[i][1]) ** 2, 0) / at.length;
        });
        const a = await api('POST', `/v1/models/${ref}/adapt`, { support: sup, steps: K, ttl_s: 600, ...extra });
        result = { xs, ys, loss };
        slider.max = K;
        slider.value = K;
        slider.disabled = false;
        lineChart(lossChart, [{ name: 'support_loss', points: loss.map((v, j) => [j, v]) }], { xlabel: 'inner step', ylabel: 'support MSE', width: 420, height: 300 });
        summary.textContent = `Adapted ${a.model}@${a.version} to ${support.length} points in ${K} steps: support loss ` +
            `${fmt(a.support_loss_before)} → ${fmt(a.support_loss_after)} (adaptation ${a.id.slice(0, 8)}, kept 10 min).`;
        draw();
    };

    main.replaceChildren(
        h('h1', {}, 'Try it: regression'),
        models.length ? '' : h('p', { class: 'note' }, 'No 1-D regression model yet: start the sinusoid example on the Jobs page.'),
        h('div', { class: 'row' },
            h('label', { for: 'reg-model' }, 'Model'), select,
            h('label', { for: 'reg-steps' }, 'Inner steps'), steps,
            h('label', { for: 'reg-lr' }, 'Inner lr'), lr),
        h('div', { class: 'grid2' },
            h('div', {}, canvas,
                h('div', { class: 'row' },
                    h('button', { type: 'button', id: 'reg-adapt', onclick: (e) => action(e.target, adapt) }, 'Adapt'),
                    h('button', {
                        type: 'button', class: 'secondary', id: 'reg-random',
                        onclick: () => {
                            truth = { a: 0.1 + Math.random() * 4.9, p: Math.random() * Math.PI };
                            support = Array.from({ length: 10 }, () => {
                                const x = X0 + Math.random() * (X1 - X0);
                                return [+x.toFixed(4), +(truth.a * Math.sin(x - truth.p)).toFixed(4)];
                            });
                            changed();
                        },
                    }, 'Random sinusoid'),
                    h('button', { type: 'button', class: 'secondary', id: 'reg-clear', onclick: () => { support = []; truth = null; changed(); } }, 'Clear')),
                h('label', { for: 'reg-slider' }, 'Adapted curve after inner step'), slider, sliderLabel,
                h('div', { class: 'legend' }, h('span', {}, h('i', { class: 'lg-meta' }), 'meta-parameters (step 0)'),
                    h('span', {}, h('i', { class: 'lg-truth' }), 'true curve'), h('span', {}, h('i', { class: 'lg-adapted' }), 'adapted'),
                    h('span', {}, h('i', { class: 'lg-support' }), 'support points')),
                summary),
            h('div', {}, h('h2', {}, 'Support loss'), lossChart)));
    changed();
}

/* ---- classification ---- */

function parseRows(text, withLabel, D) {
    const rows = text.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
    return rows.map((l, i) => {
        const v = l.split(/[\s,;]+/).map(Number);
        const want = D + (withLabel ? 1 : 0);
        if (v.length !== want || v.some((n) => !Number.isFinite(n)))
            throw new Error(`row ${i + 1} ("${l.slice(0, 40)}"): expected ${want} numbers${withLabel ? ' (features, then the class)' : ''}`);
        return v;
    });
}

export async function tryClassification(main) {
    const models = await modelsWhere((a) => a.head === 'classification');
    const select = modelSelect('cls-model', models);
    const steps = numInput('cls-steps', 5, 0, 100, 1);
    const supportIn = h('textarea', { id: 'cls-support', rows: 8, spellcheck: false, placeholder: 'x1, x2, …, class' });
    const queryIn = h('textarea', { id: 'cls-query', rows: 6, spellcheck: false, placeholder: 'x1, x2, …' });
    const file = h('input', { type: 'file', id: 'cls-file', accept: '.csv,.txt,.json' });
    const out = h('div', { id: 'cls-result' });
    const model = () => models.find((m) => m.ref === select.value);

    const example = () => {
        const m = model();
        if (!m) return;
        const D = m.arch.sizes[0], N = m.arch.sizes.at(-1);
        const centers = Array.from({ length: N }, () => Array.from({ length: D }, () => +(Math.random() * 8 - 4).toFixed(2)));
        const noisy = (c) => c.map((v) => +(v + (Math.random() - 0.5) * 0.6).toFixed(3));
        supportIn.value = centers.flatMap((c, k) => [noisy(c), noisy(c)].map((x) => `${x.join(', ')}, ${k}`)).join('\n');
        queryIn.value = centers.map((c) => noisy(c).join(', ')).join('\n');
    };
    file.addEventListener('change', async () => {
        if (!file.files.length) return;
        const t = await file.files[0].text();
        try {
            const j = JSON.parse(t);
            supportIn.value = j.x.map((x, i) => `${x.join(', ')}, ${j.labels ? j.labels[i] : j.y[i][0]}`).join('\n');
        } catch {
            supportIn.value = t;
        }
    });
    const run = async () => {
        const m = model();
        if (!m) throw new Error('no classification model yet: train one on the Jobs page');
        const D = m.arch.sizes[0];
        const sup = parseRows(supportIn.value, true, D);
        const q = parseRows(queryIn.value, false, D);
        if (!sup.length) throw new Error('support: give at least one labelled row');
        if (!q.length) throw new Error('query: give at least one row to classify');
        const k = Math.round(+steps.value);
        // zero steps: the meta-parameters' predictions (the API refuses steps 0 with a support set)
        const p = await api('POST', `/v1/models/${encodeURIComponent(m.ref)}/predict`, k === 0 ? { x: q } : {
            x: q, steps: k,
            support: { x: sup.map((r) => r.slice(0, D)), y: sup.map((r) => [r[D]]) },
        });
        const N = p.probabilities[0].length;
        out.replaceChildren(h('div', { class: 'table-wrap' }, h('table', {},
            h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'query row'), h('th', { scope: 'col' }, 'predicted'),
                Array.from({ length: N }, (_, k) => h('th', { scope: 'col' }, `p(class ${k})`)))),
            h('tbody', {}, q.map((x, i) => h('tr', {},
                h('td', { class: 'mono' }, x.join(', ')),
                h('td', { class: 'num', 'data-label': p.labels[i] }, p.labels[i]),
                p.probabilities[i].map((v) => {
                    const bar = h('span', { class: 'bar' });
                    bar.style.width = `${(v * 4).toFixed(2)}rem`;
                    return h('td', {}, bar, ' ', fmt(v, 3));
                })))))));
    };

    main.replaceChildren(
        h('h1', {}, 'Try it: classification'),
        models.length ? '' : h('p', { class: 'note' }, 'No classification model yet: train one on the Jobs page (e.g. the gaussian family).'),
        h('div', { class: 'row' },
            h('label', { for: 'cls-model' }, 'Model'), select,
            h('label', { for: 'cls-steps' }, 'Inner steps'), steps,
            h('button', { type: 'button', class: 'secondary', id: 'cls-example', onclick: example }, 'Example rows')),
        h('div', { class: 'grid2' },
            h('div', { class: 'field' }, h('label', { for: 'cls-support' }, 'Labelled rows (features, then the class index)'), supportIn,
                h('div', { class: 'row' }, h('label', { for: 'cls-file' }, 'or load a file (CSV, or JSON with x and labels)'), file)),
            h('div', { class: 'field' }, h('label', { for: 'cls-query' }, 'Rows to classify'), queryIn)),
        h('div', { class: 'row' }, h('button', { type: 'button', id: 'cls-adapt', onclick: (e) => action(e.target, run) }, 'Adapt and classify')),
        out);
    example();
}
