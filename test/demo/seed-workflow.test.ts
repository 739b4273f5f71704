// SPDX-License-Identifier: Apache-2.0
// Goal: demo/seed-workflow.sh, the whole seed workflow a new user runs after `npm run up`, passes
// against a real server: ext4 image built on the "PC side", synced up, registered as an image,
// 200 thin clones in one call, NBD writes that leave the other clones equal to the image, a
// snapshot under fio load, sharing with an account and a group, a shared clone and read-only
// attach, sync back + e2fsck + debugfs, and a third account refused at every step (NBD too).
// Method: `atoll serve` as a child process with an (initially empty) TLS-PSK key file, which the
// script fills with a key per account it creates, so NBD access is checked per account; the
// script runs with bash and must exit 0 and report its refusals. Needs the tools listed in the
// script's header: missing ones skip here, and fail under CI=true.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { repoRoot, type ServerProcess, startServer } from '../helpers/server.js';

const tools = ['mke2fs', 'e2fsck', 'debugfs', 'qemu-img', 'qemu-io', 'fio', 'nbdinfo', 'nbdcopy'];

function missingTools(): string[] {
  return tools.filter((tool) => spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0);
}

/** Run the script; resolves with its exit code and output (stdout and stderr interleaved). */
function runScript(env: NodeJS.ProcessEnv): Promise<{ code: number | null; output: string }> {
  const script = join(repoRoot(), 'demo', 'seed-workflow.sh');
  const child = spawn('bash', [script], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => {
    output += s;
  });
  child.stderr.setEncoding('utf8').on('data', (s: string) => {
    output += s;
  });
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, output })));
}

describe('demo/seed-workflow.sh', () => {
  let dir = '';
  let server: ServerProcess | undefined;
  let pskFile = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'atoll-seed-test-'));
    pskFile = join(dir, 'nbd.psk');
    await writeFile(pskFile, '# keys are added by the script\n');
    await chmod(pskFile, 0o600);
    server = await startServer({
      dataDir: join(dir, 'data'),
      extraArgs: ['--nbd-psk', pskFile],
    });
  });
  after(async () => {
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('runs the seed workflow end to end and exits 0', { timeout: 600_000 }, async (t) => {
    const missing = missingTools();
    if (missing.length > 0 && process.env.CI !== 'true') {
      t.skip(`missing tools: ${missing.join(' ')}`);
      return;
    }
    assert.ok(server !== undefined);
    const { code, output } = await runScript({
      ...process.env,
      ATOLL_URL: server.url,
      ATOLL_DATA: join(dir, 'data'),
      ATOLL_TOKEN: '',
      ATOLL_NBD: server.nbdAddress,
      ATOLL_NBD_PSK: pskFile,
      TMPDIR: dir,
    });
    assert.equal(code, 0, `the script failed:\n${output.slice(-6000)}`);
    assert.match(output, /200 thin clones of the image in one call/);
    assert.match(output, /created 200 volumes/);
    assert.match(output, /8 readers .* read the snapshot at once, byte-exact/);
    assert.match(output, /e2fsck clean; hello\.txt, etc\/blob\.bin and etc\/numbers\.txt/);
    // Every refusal is asserted inside the script; here: all of them ran, NBD ones included.
    const refusals = Number(/refusals checked for \S+: (\d+)/.exec(output)?.[1]);
    assert.ok(refusals >= 11, `expected at least 11 refusals, got ${refusals}`);
    assert.equal(output.match(/refused over NBD:/g)?.length, 4, output.slice(-3000));
    assert.match(output, /seed workflow: OK\n/);
  });
});
