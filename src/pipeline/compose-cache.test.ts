// SPDX-License-Identifier: Apache-2.0
// Goal: pipeline specs with a cache stage parse into typed options, print back canonically, and
// every limit (spec length, stage count, one cache, memory and disk sizes, read-ahead, disk path,
// write-back needing a disk) is refused with a message that names the problem.
// Method: parsePipeline on good and bad texts; messages are matched by the words a user needs.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isStoreError } from '../core/errors.js';
import { formatPipeline, parsePipeline, pipelineStagesMax, pipelineTextMax } from './compose.js';

const MiB = 1024 * 1024;

function refused(text: string, pattern: RegExp): void {
  assert.throws(
    () => parsePipeline(text),
    (err) => isStoreError(err, 'INVALID') && pattern.test(err.message),
    `${text} should be refused with ${pattern}`,
  );
}

describe('pipeline specs with a cache', () => {
  it('parse, with defaults, and print back canonically', () => {
    const specs = parsePipeline(
      'cache(mode=writeback,mem=256M,disk=/var/cache/atoll,size=20G),ratelimit(iops=500)',
    );
    assert.deepEqual(specs[0], {
      kind: 'cache',
      mode: 'writeback',
      memBytes: 256 * MiB,
      diskDir: '/var/cache/atoll',
      diskBytes: 20 * 1024 * MiB,
      readAheadBytes: MiB,
    });
    const text = formatPipeline(specs);
    assert.deepEqual(parsePipeline(text), specs, 'the canonical text parses to the same specs');
    assert.equal(formatPipeline(parsePipeline(text)), text);
    const plain = parsePipeline('cache()');
    assert.equal(plain[0]?.kind === 'cache' && plain[0].mode, 'writethrough');
    assert.deepEqual(parsePipeline('none'), []);
    assert.deepEqual(parsePipeline(' cache( mode = off ) , delay(read=1,write=1)').length, 2);
  });

  it('refuses bad specs with clear messages', () => {
    refused('x'.repeat(pipelineTextMax + 1), /longer than 1024/);
    refused(
      Array(pipelineStagesMax + 1)
        .fill('delay(read=1)')
        .join(','),
      /at most 8 stages/,
    );
    refused('cache(),cache()', /one cache stage/);
    refused('cache(mode=fast)', /mode must be one of off, writethrough, writeback/);
    refused('cache(mem=1M)', /mem must be 64M\.\.64G/);
    refused('cache(mem=65G)', /mem must be 64M\.\.64G/);
    refused('cache(mem=lots)', /bad mem=lots/);
    refused('cache(size=1M)', /size must be 64M\.\.16T/);
    refused('cache(mode=writeback,size=0)', /writeback needs a disk/);
    refused('cache(readahead=9M)', /readahead must be 0\.\.8388608/);
    refused('cache(disk=relative/path)', /absolute path/);
    refused('cache(disk=/a;rm)', /absolute path/);
    refused('cache(colour=red)', /unknown option colour/);
    refused('cachet()', /unknown stage "cachet": cache, delay, fault, ratelimit/);
    refused('cache(mode=writeback', /unbalanced parentheses/);
    refused('cache(mode)', /expected key=value/);
  });
});
