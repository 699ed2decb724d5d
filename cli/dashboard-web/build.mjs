// Bundles the dashboard page into dist/ (index.html, app.js, app.css), which cli/build.rs
// embeds into the `mapper` binary, and records in dist/source-hash.txt the hash of the sources
// it was built from (cli/build.rs recomputes it and refuses a stale bundle).
//
// Run by scripts/build-web.sh after `npm ci`; `node build.mjs` by hand.
import { build } from 'esbuild';
import { readFileSync, readdirSync, statSync, mkdirSync, writeFileSync, copyFileSync, rmSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, 'dist');

// FNV-1a 64 over package.json, package-lock.json, build.mjs and every file under src/, sorted
// by path: the path, a zero byte, the content, a zero byte (as cli/build.rs computes it).
function sourceHash() {
  const files = ['package.json', 'package-lock.json', 'build.mjs'];
  const walk = (dir) => {
    for (const name of readdirSync(join(here, dir))) {
      const rel = `${dir}/${name}`;
      if (statSync(join(here, rel)).isDirectory()) walk(rel);
      else files.push(rel);
    }
  };
  walk('src');
  files.sort((a, b) => (Buffer.compare(Buffer.from(a), Buffer.from(b))));
  const prime = 0x100000001b3n;
  const mask = (1n << 64n) - 1n;
  let hash = 0xcbf29ce484222325n;
  const feed = (bytes) => {
    for (const b of bytes) hash = ((hash ^ BigInt(b)) * prime) & mask;
  };
  for (const file of files) {
    feed(Buffer.from(file));
    feed([0]);
    feed(readFileSync(join(here, file)));
    feed([0]);
  }
  return hash.toString(16).padStart(16, '0');
}

rmSync(dist, { recursive: true, force: true });
mkdirSync(dist, { recursive: true });
await build({
  entryPoints: [join(here, 'src/main.js')],
  bundle: true,
  minify: true,
  format: 'iife',
  target: ['chrome110', 'firefox110', 'safari16'],
  outfile: join(dist, 'app.js'),
  legalComments: 'eof',
  logLevel: 'warning',
});
copyFileSync(join(here, 'src/index.html'), join(dist, 'index.html'));
copyFileSync(join(here, 'src/style.css'), join(dist, 'app.css'));
writeFileSync(join(dist, 'source-hash.txt'), `${sourceHash()}\n`);
console.log(`dashboard bundle written to ${dist} (${statSync(join(dist, 'app.js')).size} bytes of JavaScript)`);
