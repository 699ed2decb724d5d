// The dashboard in a real browser: Debian's headless Chromium driven by playwright-core
// (no browser download). Run by cli/tests/dashboard_browser.rs against a dashboard on a real
// mapper-server; exits non-zero with the reason on the first failed check.
//
//   node test/browser.mjs seed  URL EXPECTED.json DECLARED.yaml OUTDIR
//       EXPECTED.json: `mapper list --format json --include-unresolved` of the same server.
//       After the checks it prints WAITING_FOR_CHANGE and waits for a line on stdin (the
//       test has then added a call), and checks the change is drawn with the view kept.
//   node test/browser.mjs large URL WORKLOADS EDGES OUTDIR
//
// Prints one line `RESULT {json}` with the figures measured.
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';

const [mode, url, ...rest] = process.argv.slice(2);
const executablePath = process.env.MAPPER_CHROMIUM || '/usr/bin/chromium';

function fail(message) {
  console.error(`browser test (${mode}): ${message}`);
  process.exitCode = 1;
  throw new Error(message);
}

function check(condition, message) {
  if (!condition) fail(message);
}

async function open(outDir) {
  mkdirSync(outDir, { recursive: true });
  const profile = mkdtempSync(join(tmpdir(), 'mapper-dashboard-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    viewport: { width: 1600, height: 1000 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = context.pages()[0] || await context.newPage();
  const origin = new URL(url).origin;
  const problems = [];
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console error: ${m.text()}`); });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  context.on('request', (r) => {
    if (!r.url().startsWith(origin) && !r.url().startsWith('blob:') && !r.url().startsWith('data:')) {
      problems.push(`request outside the dashboard: ${r.url()}`);
    }
  });
  const close = async () => {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  };
  return { context, page, problems, close };
}

const peerKey = (p) => {
  switch (p.type) {
    case 'workload': return `workload ${p.name}.${p.namespace}`;
    case 'service': return `service ${p.name}.${p.namespace}`;
    case 'api_server': return 'api';
    case 'node': return `node ${p.name}`;
    default: return `${p.type} ${p.ip}`;
  }
};

// Waits for the first render and returns the page's timings.
async function firstRender(page) {
  await page.goto(url);
  const limit = new Promise((_, reject) => setTimeout(() => reject(new Error('no first render within 180 s')), 180000));
  return Promise.race([page.evaluate(() => window.mapperDashboard.firstRender), limit]);
}

async function seed([expectedPath, declaredPath, outDir]) {
  const expected = JSON.parse(readFileSync(expectedPath, 'utf8'));
  const { page, problems, close } = await open(outDir);
  try {
    const timings = await firstRender(page);
    // Every workload and call of the seed, drawn and visible.
    const drawn = await page.evaluate(() => {
      const { cy } = window.mapperDashboard;
      const key = (n) => {
        const d = n.data();
        switch (d.type) {
          case 'workload': return `workload ${d.name}.${d.namespace}`;
          case 'service': return `service ${d.name}.${d.namespace}`;
          case 'api': return 'api';
          case 'node': return `node ${d.name}`;
          default: return `${d.type} ${d.name}`;
        }
      };
      return {
        edges: cy.edges().filter((e) => e.visible()).map((e) => ({ from: key(e.source()), to: key(e.target()), established: e.data('established'), failed: e.data('failed') })),
        nodes: cy.nodes().filter((n) => n.visible() && n.data('node')).map(key),
      };
    });
    let calls = 0;
    for (const client of expected) {
      const from = peerKey(client.client);
      check(drawn.nodes.includes(from), `workload ${from} is not shown; shown: ${drawn.nodes.join(', ')}`);
      for (const call of client.calls) {
        calls += 1;
        const to = peerKey(call.server);
        check(drawn.nodes.includes(to), `${to} (called by ${from}) is not shown`);
        const edge = drawn.edges.find((e) => e.from === from && e.to === to);
        check(edge, `the call ${from} -> ${to} is not drawn`);
        check(edge.established === call.established && edge.failed === call.failed,
          `the call ${from} -> ${to} shows ${edge.established}/${edge.failed}, mapper list says ${call.established}/${call.failed}`);
      }
    }
    check(drawn.edges.length === calls, `${drawn.edges.length} calls drawn, mapper list has ${calls}`);
    await page.screenshot({ path: join(outDir, 'seed.png') });

    // The namespace filter hides team2 (its workloads and their calls), and nothing else.
    await page.click('#ns-filter summary');
    await page.uncheck('#ns-list input[data-ns="team2"]');
    await page.click('#ns-filter summary');
    const filtered = await page.evaluate(() => {
      const { cy } = window.mapperDashboard;
      const leaves = cy.nodes().filter((n) => n.data('node'));
      return {
        team2Visible: leaves.filter((n) => n.data('namespace') === 'team2' && n.visible()).map((n) => n.data('name')),
        team2Total: leaves.filter((n) => n.data('namespace') === 'team2').length,
        othersHidden: leaves.filter((n) => n.data('namespace') && n.data('namespace') !== 'team2' && !n.visible()).map((n) => n.data('name')),
      };
    });
    check(filtered.team2Total > 0, 'the seed has no workload in team2 to hide');
    check(filtered.team2Visible.length === 0, `team2 hidden, yet shown: ${filtered.team2Visible.join(', ')}`);
    check(filtered.othersHidden.length === 0, `hiding team2 hid others too: ${filtered.othersHidden.join(', ')}`);
    await page.screenshot({ path: join(outDir, 'filter-team2.png') });
    await page.click('#ns-filter summary');
    await page.check('#ns-list input[data-ns="team2"]');
    await page.click('#ns-filter summary');

    // Clicking the call transaction-service -> ledger shows its counts.
    const ts = expected.find((c) => c.client.name === 'transaction-service');
    const ledgerCall = ts && ts.calls.find((c) => c.server.name === 'ledger');
    check(ledgerCall, 'the seed lacks transaction-service -> ledger');
    const point = await page.evaluate(() => {
      const { cy } = window.mapperDashboard;
      const e = cy.edges().filter((x) => x.source().data('name') === 'transaction-service' && x.target().data('name') === 'ledger');
      cy.fit(e.connectedNodes(), 200);
      const m = e[0].renderedMidpoint();
      const box = cy.container().getBoundingClientRect();
      return { x: box.left + m.x, y: box.top + m.y };
    });
    await page.mouse.click(point.x, point.y);
    await page.waitForSelector('#edge-established', { timeout: 5000 })
      .catch(() => fail('clicking the call transaction-service -> ledger showed no call details'));
    const shown = await page.textContent('#edge-established');
    check(Number(shown) === ledgerCall.established, `the panel says ${shown} connections, mapper list ${ledgerCall.established}`);
    const panel = await page.textContent('#panel');
    check(panel.includes(ledgerCall.ports.map((p) => `${p.port}/${p.protocol}`).join(', ')), `the panel lacks the ports: ${panel}`);
    await page.screenshot({ path: join(outDir, 'edge-selected.png') });

    // The audit story: the chart declares telemetry and lost ledger.
    await page.setInputFiles('#audit-files', declaredPath);
    await page.waitForFunction(() => window.mapperDashboard.state.audit !== null, null, { timeout: 10000 })
      .catch(async () => fail(`no audit result: ${await page.textContent('#error')}`));
    const verdict = await page.evaluate(() => {
      const { cy } = window.mapperDashboard;
      const e = cy.edges().filter((x) => x.source().data('name') === 'transaction-service' && x.target().data('name') === 'ledger');
      const unused = cy.edges('.audit-unused').map((x) => x.data('unused').target);
      return { audit: e.data('audit'), missingClass: e.hasClass('audit-missing'), unused };
    });
    check(verdict.audit === 'MISSING' && verdict.missingClass, `transaction-service -> ledger is ${verdict.audit}, not MISSING`);
    check(verdict.unused.includes('telemetry.team4'), `telemetry.team4 is not drawn UNUSED: ${verdict.unused}`);
    const panelAudit = await page.textContent('#panel');
    check(panelAudit.includes('MISSING'), `the selected call's panel does not say MISSING: ${panelAudit}`);
    await page.screenshot({ path: join(outDir, 'audit.png') });

    // A workload's ClientIntents, rendered by the dashboard process in the version chosen.
    await page.evaluate(() => {
      const { cy } = window.mapperDashboard;
      cy.elements().unselect();
      cy.nodes().filter((n) => n.data('name') === 'transaction-service')[0].select();
    });
    await page.waitForSelector('#intents-yaml', { timeout: 5000 }).catch(() => fail('no ClientIntents shown for transaction-service'));
    await page.selectOption('#intents-version', 'v1alpha2');
    await page.waitForFunction(() => (document.querySelector('#intents-yaml') || {}).textContent?.startsWith('apiVersion: k8s.otterize.com/v1alpha2'), null, { timeout: 5000 })
      .catch(() => fail('the v1alpha2 ClientIntents did not appear'));
    const yaml = await page.textContent('#intents-yaml');
    check(yaml.includes('ledger.team3'), `the ClientIntents lack ledger: ${yaml}`);
    await page.screenshot({ path: join(outDir, 'intents.png') });

    // A change on the server is drawn on the next refresh, with pan, zoom and selection kept.
    const before = await page.evaluate(() => {
      const { cy } = window.mapperDashboard;
      return { pan: cy.pan(), zoom: cy.zoom(), selected: cy.$(':selected').map((e) => e.id()), edges: cy.edges().length, version: window.mapperDashboard.state.version };
    });
    console.log('WAITING_FOR_CHANGE');
    await new Promise((resolve) => createInterface({ input: process.stdin }).once('line', resolve));
    await page.waitForFunction((v) => window.mapperDashboard.state.version !== v, before.version, { timeout: 20000 })
      .catch(() => fail('the page did not pick up the change on the server'));
    const after = await page.evaluate(() => {
      const { cy } = window.mapperDashboard;
      return { pan: cy.pan(), zoom: cy.zoom(), selected: cy.$(':selected').map((e) => e.id()), edges: cy.edges().not('.ghost').length,
        audit: cy.edges().filter((x) => x.source().data('name') === 'transaction-service' && x.target().data('name') === 'ledger').data('audit') };
    });
    check(after.edges > before.edges - (await page.evaluate(() => window.mapperDashboard.cy.edges('.ghost').length)), `no new call drawn (${after.edges} edges)`);
    check(after.zoom === before.zoom && after.pan.x === before.pan.x && after.pan.y === before.pan.y,
      `the view moved on refresh: ${JSON.stringify(before)} -> ${JSON.stringify(after)}`);
    check(JSON.stringify(after.selected) === JSON.stringify(before.selected), `the selection changed on refresh: ${before.selected} -> ${after.selected}`);
    check(after.audit === 'MISSING', 'the audit overlay was lost on refresh');
    await page.screenshot({ path: join(outDir, 'after-refresh.png') });
    check(problems.length === 0, problems.join('\n'));
    return { firstRenderMs: Math.round(timings.firstRenderMs), fetchMs: Math.round(timings.fetchMs), layoutMs: Math.round(timings.layoutMs), calls };
  } finally {
    await close();
  }
}

async function large([workloads, edges, outDir]) {
  const { context, page, problems, close } = await open(outDir);
  try {
    // MAPPER_DASHBOARD_PROFILE=FILE: a CPU profile of the first render, for working on it.
    const profile = process.env.MAPPER_DASHBOARD_PROFILE;
    const cdp = profile ? await context.newCDPSession(page) : null;
    if (cdp) { await cdp.send('Profiler.enable'); await cdp.send('Profiler.start'); }
    const timings = await firstRender(page);
    if (cdp) {
      const { profile: p } = await cdp.send('Profiler.stop');
      (await import('node:fs')).writeFileSync(profile, JSON.stringify(p));
    }
    const counts = await page.evaluate(() => {
      const { cy } = window.mapperDashboard;
      return { workloads: cy.nodes('.workload').length, edges: cy.edges().length, visibleEdges: cy.edges().filter((e) => e.visible()).length };
    });
    check(counts.workloads === Number(workloads), `${counts.workloads} workloads drawn, expected ${workloads}`);
    check(counts.edges === Number(edges) && counts.visibleEdges === Number(edges), `${counts.edges} calls drawn (${counts.visibleEdges} visible), expected ${edges}`);
    await page.screenshot({ path: join(outDir, 'large.png') });
    // Interactive: a zoom and a pan each redraw within a frame budget we measure and report.
    const interaction = await page.evaluate(async () => {
      const { cy } = window.mapperDashboard;
      const frame = () => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
      const t0 = performance.now();
      cy.zoom({ level: cy.zoom() * 1.5, renderedPosition: { x: cy.width() / 2, y: cy.height() / 2 } });
      await frame();
      const t1 = performance.now();
      cy.panBy({ x: 200, y: 120 });
      await frame();
      const t2 = performance.now();
      return { zoomMs: t1 - t0, panMs: t2 - t1 };
    });
    // Search and a filter over the whole map.
    const t0 = Date.now();
    await page.fill('#search', 'w-0042');
    await page.selectOption('#since', '3600000');
    const filterMs = Date.now() - t0;
    await page.screenshot({ path: join(outDir, 'large-search.png') });
    check(problems.length === 0, problems.join('\n'));
    return { firstRenderMs: Math.round(timings.firstRenderMs), fetchMs: Math.round(timings.fetchMs), syncMs: Math.round(timings.syncMs), layoutMs: Math.round(timings.layoutMs), layout: timings.layout, parts: timings.layoutParts, afterLayoutMs: Math.round(timings.afterLayoutMs), beforeFrameMs: Math.round(timings.beforeFrameMs),
      zoomMs: Math.round(interaction.zoomMs), panMs: Math.round(interaction.panMs), searchAndFilterMs: filterMs, ...counts };
  } finally {
    await close();
  }
}

try {
  const result = mode === 'seed' ? await seed(rest) : mode === 'large' ? await large(rest) : fail(`unknown mode ${mode}`);
  console.log(`RESULT ${JSON.stringify(result)}`);
  process.exit(0);
} catch (e) {
  if (!process.exitCode) console.error(`browser test (${mode}): ${e.stack || e}`);
  process.exit(1);
}
