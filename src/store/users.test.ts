// SPDX-License-Identifier: Apache-2.0
// Goal: keys are stored only as salted scrypt hashes and verified exactly; v1 auth's
// ACCOUNT:USER parsing rejects malformed input. Method: hash keys, check right and wrong keys,
// unknown users (no stored hash) and tampered hashes, and a table of X-Auth-User values.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isStoreError } from '../core/errors.js';
import { checkKey, hashKey, splitAuthUser, verifyKey } from './users.js';

describe('users', () => {
  it('hashes keys with a fresh salt and verifies only the right key', async () => {
    const a = await hashKey('correct horse');
    const b = await hashKey('correct horse');
    assert.match(a, /^scrypt\$16384\$8\$1\$[0-9a-f]{32}\$[0-9a-f]{64}$/);
    assert.notEqual(a, b, 'salted');
    assert.ok(!a.includes('correct'));
    assert.equal(await verifyKey('correct horse', a), true);
    assert.equal(await verifyKey('correct horsf', a), false);
    assert.equal(await verifyKey('correct horse', undefined), false);
    assert.equal(await verifyKey('correct horse', 'sha256$x'), false);
    assert.equal(await verifyKey('correct horse', a.replace(/.$/, '0')), a.endsWith('0'));
  });

  it('parses ACCOUNT:USER and checks key lengths', () => {
    assert.deepEqual(splitAuthUser('acct:bob'), { account: 'acct', user: 'bob' });
    assert.deepEqual(splitAuthUser('a:b:c'), { account: 'a', user: 'b:c' });
    for (const bad of ['', 'nouser', ':bob', 'acct:']) {
      assert.throws(
        () => splitAuthUser(bad),
        (err) => isStoreError(err, 'UNAUTHENTICATED'),
      );
    }
    assert.throws(
      () => checkKey('short'),
      (err) => isStoreError(err, 'INVALID'),
    );
    assert.equal(checkKey('long enough'), 'long enough');
  });
});
