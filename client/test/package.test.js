// The package as npm publishes it: what `npm pack` puts in it, and that its types refuse wrong calls.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join, posix } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const CLIENT = dirname(dirname(fileURLToPath(import.meta.url)));
const ROOT = dirname(CLIENT);
const TSC = join(ROOT, 'node_modules', '.bin', 'tsc');

describe('npm pack', () => {
  test('lists the modules, their declarations, README, LICENSE and package.json, and nothing else', async () => {
    const files = await packedFiles();
    assert.deepEqual(files, [
      'LICENSE',
      'README.md',
      'package.json',
      'react.d.ts',
      'react.js',
      'realtime.d.ts',
      'realtime.js',
    ]);
  });

  test('every export and every relative import of a packed module is in the package', async () => {
    const files = new Set(await packedFiles());
    const manifest = JSON.parse(await readFile(join(CLIENT, 'package.json'), 'utf8'));
    const targets = [manifest.main, manifest.types];
    for (const entry of Object.values(manifest.exports)) {
      targets.push(...(typeof entry === 'string' ? [entry] : Object.values(entry)));
    }
    for (const target of targets) assert.ok(files.has(posix.normalize(target)), `${target} is not packed`);

    for (const file of [...files].filter((name) => /\.(js|d\.ts)$/.test(name))) {
      const source = await readFile(join(CLIENT, file), 'utf8');
      for (const [, specifier] of source.matchAll(/\bfrom\s+'(\.[^']+)'/g)) {
        const imported = posix.normalize(posix.join(posix.dirname(file), specifier));
        const declared = imported.replace(/\.js$/, '.d.ts');
        assert.ok(files.has(imported), `${file} imports ${specifier}, which is not packed`);
        if (file.endsWith('.d.ts')) assert.ok(files.has(declared), `${file} needs ${declared}`);
      }
    }
  });

  test('the packed LICENSE is the repository LICENSE', async () => {
    const [packed, root] = await Promise.all([
      readFile(join(CLIENT, 'LICENSE'), 'utf8'),
      readFile(join(ROOT, 'LICENSE'), 'utf8'),
    ]);
    assert.equal(packed, root);
    assert.match(packed, /Apache License\s+Version 2\.0, January 2004/);
  });
});

describe('types', () => {
  test('every export of the modules is declared in its .d.ts, and nothing more', async () => {
    for (const name of ['realtime', 'react']) {
      const module = await import(pathToFileURL(join(CLIENT, `${name}.js`)).href);
      const declarations = await readFile(join(CLIENT, `${name}.d.ts`), 'utf8');
      // A set: an overloaded function is declared once per signature.
      const declared = [...new Set([...declarations.matchAll(/^export declare (?:function|const|class) (\w+)/gm)].map((m) => m[1]))];
      assert.deepEqual(declared.sort(), Object.keys(module).sort(), `${name}.d.ts`);
    }
  });

  test('RealtimeOptions declares exactly the options realtime.js reads', async () => {
    const source = await readFile(join(CLIENT, 'realtime.js'), 'utf8');
    const read = new Set([
      ...[...source.matchAll(/\bconfig\.(\w+)/g)].map((m) => m[1]),
      ...[...source.matchAll(/'(\w+)' in config\b/g)].map((m) => m[1]),
      ...[...source.matchAll(/const \{([^}]+)\} = config;/g)].flatMap((m) => m[1].split(',').map((s) => s.trim())),
    ]);
    const declarations = await readFile(join(CLIENT, 'realtime.d.ts'), 'utf8');
    const body = declarations.match(/export interface RealtimeOptions \{([\s\S]*?)\n\}/)[1];
    const declared = new Set([...body.matchAll(/^  (\w+)\??:/gm)].map((m) => m[1]));
    assert.deepEqual([...declared].sort(), [...read].sort());
  });

  test('tsc refuses each wrong call of types-test/wrong-usage.tsx once its @ts-expect-error is removed', async () => {
    const source = await readFile(join(CLIENT, 'types-test', 'wrong-usage.tsx'), 'utf8');
    const lines = source.split('\n');
    // 1-based line numbers of the calls right below each directive.
    const expected = lines.flatMap((line, index) => (/^\s*\/\/ @ts-expect-error/.test(line) ? [index + 2] : []));
    assert.ok(expected.length >= 5, 'the wrong calls are marked');

    // Inside client/, so that 'chalice-realtime-client' resolves to this package as it does for an app.
    const dir = await mkdtemp(join(CLIENT, 'types-test', '.tmp-'));
    try {
      await writeFile(join(dir, 'wrong.tsx'), source.replaceAll('// @ts-expect-error', '// was expected:'));
      await writeFile(
        join(dir, 'tsconfig.json'),
        JSON.stringify({ extends: '../tsconfig.json', files: ['wrong.tsx'] }),
      );
      const result = await run(TSC, ['-p', dir, '--noEmit', '--strict', '--pretty', 'false']).then(
        () => ({ code: 0, stdout: '' }),
        (error) => error,
      );
      assert.notEqual(result.code, 0, 'tsc accepted the wrong calls');
      const errorLines = [...result.stdout.matchAll(/wrong\.tsx\((\d+),\d+\): error TS\d+/g)].map((m) => Number(m[1]));
      assert.deepEqual([...new Set(errorLines)].sort((a, b) => a - b), expected);
      assert.match(result.stdout, /'reconnect' does not exist in type 'RealtimeOptions'/);
      assert.match(result.stdout, /Type 'RealtimeEvent' is not assignable to type 'string'/);
      assert.match(result.stdout, /Property 'getToken' is missing/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

async function packedFiles() {
  const { stdout } = await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: CLIENT });
  const [report] = JSON.parse(stdout);
  return report.files.map((file) => file.path).sort();
}
