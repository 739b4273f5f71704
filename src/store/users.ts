// SPDX-License-Identifier: Apache-2.0
// Users inside accounts and Swift v1 auth (as tempauth has them).
//
// Design note. A user is `ACCOUNT:USER` with a key and an admin flag. Keys are never stored: a
// row keeps `scrypt$N$r$p$SALT$HASH` (random 16-byte salt, 32-byte scrypt output), checked with
// timingSafeEqual, so a stolen database does not give keys away and a check leaks no timing.
// v1 auth trades a key for a token that expires after `tokenLifeMs`; the token, like every
// token, is stored as its SHA-256 only. scrypt runs on libuv's pool (crypto.scrypt), so a burst
// of logins does not stall the event loop. Unknown users still pay one scrypt, so the answer
// time does not tell which users exist.
import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { StoreError } from '../core/errors.js';

/** Lifetime of a token issued by v1 auth (tempauth's default: one day). */
export const tokenLifeMs = 24 * 3600 * 1000;
/** Keys are 8..256 characters (a generated key is 32). */
export const keyLengthMin = 8;
export const keyLengthMax = 256;

const cost = { N: 16384, r: 8, p: 1 } as const;
const hashBytes = 32;

function scryptHex(key: string, salt: Buffer, N: number, r: number, p: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(key, salt, hashBytes, { N, r, p, maxmem: 64 * 1024 * 1024 }, (err, derived) =>
      err === null ? resolve(derived) : reject(err),
    );
  });
}

export function checkKey(key: string): string {
  if (typeof key !== 'string' || key.length < keyLengthMin || key.length > keyLengthMax) {
    throw new StoreError('INVALID', `keys are ${keyLengthMin}-${keyLengthMax} characters long`);
  }
  return key;
}

export function generateKey(): string {
  return randomBytes(24).toString('base64url');
}

export async function hashKey(key: string): Promise<string> {
  const salt = randomBytes(16);
  const hash = await scryptHex(key, salt, cost.N, cost.r, cost.p);
  return `scrypt$${cost.N}$${cost.r}$${cost.p}$${salt.toString('hex')}$${hash.toString('hex')}`;
}

/** A stored hash for unknown users, so a miss costs the same scrypt as a wrong key. */
const decoy = hashKey('decoy key, never matches');

/** Whether `key` matches `stored` (undefined: no such user; the same work is done). */
export async function verifyKey(key: string, stored: string | undefined): Promise<boolean> {
  const parts = (stored ?? (await decoy)).split('$');
  const [kind, n, r, p, saltHex, hashHex] = parts;
  if (kind !== 'scrypt' || parts.length !== 6 || saltHex === undefined || hashHex === undefined) {
    return false;
  }
  const expected = Buffer.from(hashHex, 'hex');
  const actual = await scryptHex(key, Buffer.from(saltHex, 'hex'), Number(n), Number(r), Number(p));
  return expected.length === actual.length && timingSafeEqual(expected, actual) && !!stored;
}

/** `ACCOUNT:USER` as X-Auth-User carries it. */
export function splitAuthUser(text: string): { account: string; user: string } {
  const at = text.indexOf(':');
  if (at <= 0 || at === text.length - 1) {
    throw new StoreError('UNAUTHENTICATED', 'X-Auth-User must be ACCOUNT:USER');
  }
  return { account: text.slice(0, at), user: text.slice(at + 1) };
}
