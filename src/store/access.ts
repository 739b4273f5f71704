// SPDX-License-Identifier: Apache-2.0
// The one place that decides who may do what. The service gathers the facts a decision needs
// (the account's and container's ACLs, the object's grants, the caller's groups) and calls
// `authorize` once per operation; nothing else decides rights.
//
// Design note. Who may do what, in order:
// - the superuser (an admin of the "admin" account) may do anything in every account;
// - an account admin (the account's own token, NAME:NAME made by `account create --key`, users
//   made with `--admin`) may do anything in its account;
// - a plain member may read and write objects of its account, but not manage containers, ACLs,
//   groups or the account (kept from before ACLs existed; tempauth gives members nothing);
// - X-Account-Access-Control (Swift's JSON, keys admin/read-write/read-only, entries `acct` or
//   `acct:user`): admin = as an account admin, read-write = everything but ACLs, sharing and
//   account metadata, read-only = every read;
// - X-Container-Read/Write (Swift's syntax: `acct`, `acct:user`, `*:user`, referrer rules
//   `.r:*`, `.r:host`, `.r:.suffix`, `.r:-host` (deny), `.rlistings`): read grants HEAD/GET of
//   objects and, to accounts or with `.rlistings`, the container listing; write grants PUT,
//   POST, DELETE, COPY-to and hashmap PUT of objects (not reads, as in Swift);
// - X-Object-Sharing (Pithos+: `read=a,b,OWNER:GROUP;write=c`, `*` = any account): read grants
//   reads of that object, write grants reads and writes of it (Pithos+: write implies read);
// - X-Object-Public: anyone, without a token, may read the object.
// A refused caller without a token gets UNAUTHENTICATED (401), one with a token PERMISSION (403),
// as Swift answers.
import { StoreError } from '../core/errors.js';
import { aclBytesMax, sharingEntriesMax } from '../core/limits.js';
import type { Principal, Sharing } from './api.js';
import { checkName } from './names.js';

export type Access = 'read' | 'write' | 'manage';

/** Every operation the service authorizes. */
export type Operation =
  /** HEAD/GET of an account, its container listing. */
  | 'account-read'
  /** Account metadata and X-Account-Access-Control, users, groups. */
  | 'account-manage'
  /** HEAD of a container. */
  | 'container-read'
  /** GET of a container (the object listing). */
  | 'container-list'
  /** Create, delete a container, change its metadata. */
  | 'container-write'
  /** Change X-Container-Read/Write. */
  | 'container-acl'
  /** GET/HEAD, hashmap GET, COPY source, clone source, block device of a file. */
  | 'object-read'
  /** PUT, POST, DELETE, COPY destination, hashmap PUT. */
  | 'object-write'
  /** X-Object-Sharing, X-Object-Public. */
  | 'object-share'
  /** Pithos+ block upload to a container (POST ?update). */
  | 'blocks-upload';

export interface AccountAcl {
  readonly admin: readonly string[];
  readonly readWrite: readonly string[];
  readonly readOnly: readonly string[];
}

export interface ContainerAcl {
  readonly read: string | null;
  readonly write: string | null;
}

export interface ObjectAcl {
  readonly sharing: Sharing;
  readonly public: boolean;
}

/** What a decision about someone else's account looks at; absent facts grant nothing. */
export interface Facts {
  readonly account?: AccountAcl | null;
  readonly container?: ContainerAcl | null;
  readonly object?: ObjectAcl | null;
  /** Groups (`OWNER:NAME`) the caller is a member of. */
  readonly groups?: readonly string[];
}

/** True when `caller` decides inside `account` without ACLs (its own account, or superuser). */
export function isInsider(caller: Principal, account: string): boolean {
  return caller.superuser || (caller.anonymous !== true && caller.account === account);
}

/** Whether a decision about `account` needs these facts (the service loads only those). */
export function factsNeeded(caller: Principal, account: string): boolean {
  return !isInsider(caller, account);
}

const readOps: ReadonlySet<Operation> = new Set([
  'account-read',
  'container-read',
  'container-list',
  'object-read',
]);
const insiderMemberOps: ReadonlySet<Operation> = new Set([
  ...readOps,
  'object-write',
  'object-share',
  'blocks-upload',
]);

/** Decide; throws UNAUTHENTICATED or PERMISSION when `caller` may not do `op` in `account`. */
export function authorize(
  caller: Principal,
  account: string,
  op: Operation,
  facts: Facts = {},
): void {
  if (allowed(caller, account, op, facts)) return;
  if (caller.anonymous === true) {
    throw new StoreError('UNAUTHENTICATED', `a token is required (${op} in account ${account})`);
  }
  const who = caller.user === '' ? caller.account : `${caller.account}:${caller.user}`;
  throw new StoreError('PERMISSION', `${who} may not ${describe(op)} in account ${account}`);
}

function allowed(caller: Principal, account: string, op: Operation, facts: Facts): boolean {
  if (caller.superuser) return true;
  if (isInsider(caller, account)) return caller.admin || insiderMemberOps.has(op);
  const anonymous = caller.anonymous === true;
  if (!anonymous) {
    const level = accountLevel(caller, facts.account ?? null);
    if (level === 'admin') return true;
    const ownerOnly = op === 'account-manage' || op === 'container-acl' || op === 'object-share';
    if (level === 'read-write' && !ownerOnly) return true;
    if (level === 'read-only' && readOps.has(op)) return true;
  }
  const container = facts.container ?? null;
  const object = facts.object ?? null;
  switch (op) {
    case 'container-read':
    case 'container-list':
      return containerReads(caller, container, true);
    case 'object-read':
      if (object?.public === true) return true;
      return (
        containerReads(caller, container, false) ||
        shareGrants(caller, object, facts.groups ?? [], false)
      );
    case 'object-write':
      return (
        containerWrites(caller, container) || shareGrants(caller, object, facts.groups ?? [], true)
      );
    case 'blocks-upload':
      return containerWrites(caller, container);
    default:
      return false;
  }
}

function describe(op: Operation): string {
  return op.replace('-', ' ');
}

// ---- account ACLs --------------------------------------------------------------------------

/** The identities an ACL entry may name for this caller (Swift's user groups). */
function identities(caller: Principal): string[] {
  if (caller.anonymous === true) return [];
  const user = caller.user === '' ? caller.account : caller.user;
  return [caller.account, `${caller.account}:${user}`, `*:${user}`, `AUTH_${caller.account}`];
}

function accountLevel(caller: Principal, acl: AccountAcl | null): string | null {
  if (acl === null) return null;
  const ids = identities(caller);
  const has = (list: readonly string[]) => list.some((e) => ids.includes(e));
  if (has(acl.admin)) return 'admin';
  if (has(acl.readWrite)) return 'read-write';
  if (has(acl.readOnly)) return 'read-only';
  return null;
}

/** Parse X-Account-Access-Control (JSON); INVALID (400) if malformed. */
export function parseAccountAcl(text: string): AccountAcl {
  if (Buffer.byteLength(text, 'utf8') > aclBytesMax) {
    throw new StoreError('INVALID', `X-Account-Access-Control is over ${aclBytesMax} bytes`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new StoreError('INVALID', 'X-Account-Access-Control must be a JSON object');
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new StoreError('INVALID', 'X-Account-Access-Control must be a JSON object');
  }
  const out: Record<string, string[]> = { admin: [], 'read-write': [], 'read-only': [] };
  for (const [key, value] of Object.entries(json)) {
    if (!(key in out)) {
      throw new StoreError(
        'INVALID',
        `X-Account-Access-Control: unknown key ${JSON.stringify(key)} (admin, read-write, ` +
          'read-only)',
      );
    }
    if (!Array.isArray(value) || !value.every((v) => typeof v === 'string' && v !== '')) {
      throw new StoreError('INVALID', `X-Account-Access-Control: ${key} must list identities`);
    }
    out[key] = value as string[];
  }
  return {
    admin: out.admin ?? [],
    readWrite: out['read-write'] ?? [],
    readOnly: out['read-only'] ?? [],
  };
}

/** Stored account ACLs that no longer parse grant nothing (they were checked when set). */
export function accountAclOf(text: string | undefined): AccountAcl | null {
  if (text === undefined) return null;
  try {
    return parseAccountAcl(text);
  } catch {
    return null;
  }
}

// ---- container ACLs (Swift) ----------------------------------------------------------------

interface ParsedContainerAcl {
  readonly referrers: readonly string[];
  readonly identities: readonly string[];
  readonly listings: boolean;
}

const referrerPrefixes = ['.r:', '.ref:', '.referer:', '.referrer:'];

function parseContainerAclText(text: string): ParsedContainerAcl {
  const referrers: string[] = [];
  const ids: string[] = [];
  let listings = false;
  for (const raw of text.split(',')) {
    const entry = raw.trim();
    if (entry === '') continue;
    if (entry.startsWith('.')) {
      const prefix = referrerPrefixes.find((p) => entry.startsWith(p));
      if (prefix !== undefined) {
        const host = entry.slice(prefix.length).trim();
        if (host === '' || host === '-') {
          throw new StoreError('INVALID', `no host given after ${prefix} in the ACL`);
        }
        referrers.push(host);
      } else if (entry === '.rlistings') {
        listings = true;
      } else {
        throw new StoreError('INVALID', `unknown ACL designator ${JSON.stringify(entry)}`);
      }
    } else {
      ids.push(entry);
    }
  }
  return { referrers, identities: ids, listings };
}

/**
 * Check and normalize X-Container-Read/Write as Swift's clean_acl does (`.ref:` becomes `.r:`;
 * referrer rules are refused in a write ACL). INVALID (400) if malformed.
 */
export function normalizeContainerAcl(text: string, kind: 'read' | 'write'): string {
  if (Buffer.byteLength(text, 'utf8') > aclBytesMax) {
    throw new StoreError('INVALID', `X-Container-${kind} is over ${aclBytesMax} bytes`);
  }
  const parsed = parseContainerAclText(text);
  if (kind === 'write' && (parsed.referrers.length > 0 || parsed.listings)) {
    throw new StoreError('INVALID', 'referrers are not allowed in a write ACL');
  }
  return [
    ...parsed.referrers.map((r) => `.r:${r}`),
    ...(parsed.listings ? ['.rlistings'] : []),
    ...parsed.identities,
  ].join(',');
}

function parsedOrNull(text: string | null): ParsedContainerAcl | null {
  if (text === null) return null;
  try {
    return parseContainerAclText(text);
  } catch {
    return null;
  }
}

/** Swift's referrer_allowed: the last matching rule wins; `*` matches any (even none). */
export function referrerAllowed(referrer: string | undefined, rules: readonly string[]): boolean {
  if (rules.length === 0) return false;
  let host = 'unknown';
  if (referrer !== undefined && URL.canParse(referrer)) {
    host = new URL(referrer).hostname || 'unknown';
  }
  let allow = false;
  for (const rule of rules) {
    const deny = rule.startsWith('-');
    const pattern = deny ? rule.slice(1) : rule;
    const match =
      pattern === '*' ||
      pattern === host ||
      (pattern.startsWith('.') && host.endsWith(pattern)) ||
      (pattern.startsWith('.') && host === pattern.slice(1));
    if (match) allow = !deny;
  }
  return allow;
}

function containerReads(caller: Principal, acl: ContainerAcl | null, listing: boolean): boolean {
  const parsed = parsedOrNull(acl?.read ?? null);
  if (parsed === null) return false;
  if (identities(caller).some((id) => parsed.identities.includes(id))) return true;
  // Referrer rules grant objects; listings only with .rlistings (Swift).
  if (listing && !parsed.listings) return false;
  return referrerAllowed(caller.referrer, parsed.referrers);
}

function containerWrites(caller: Principal, acl: ContainerAcl | null): boolean {
  const parsed = parsedOrNull(acl?.write ?? null);
  if (parsed === null) return false;
  return identities(caller).some((id) => parsed.identities.includes(id));
}

// ---- object sharing (Pithos+) --------------------------------------------------------------

function shareGrants(
  caller: Principal,
  acl: ObjectAcl | null,
  groups: readonly string[],
  write: boolean,
): boolean {
  if (acl === null || caller.anonymous === true) return false;
  const mine = (grantee: string) =>
    grantee === '*' || grantee === caller.account || groups.includes(grantee);
  if (acl.sharing.write.some(mine)) return true;
  return !write && acl.sharing.read.some(mine);
}

/** Whether any grant names a group (then the service loads the caller's groups). */
export function namesGroups(sharing: Sharing | undefined): boolean {
  return sharing !== undefined && [...sharing.read, ...sharing.write].some((g) => g.includes(':'));
}

/** Parse X-Object-Sharing (`read=a,b,OWNER:GROUP;write=c`, '' = no sharing). INVALID if bad. */
export function parseSharing(text: string): Sharing {
  const read = new Set<string>();
  const write = new Set<string>();
  for (const part of text.split(';')) {
    const clause = part.trim();
    if (clause === '') continue;
    const eq = clause.indexOf('=');
    const key = eq < 0 ? '' : clause.slice(0, eq).trim().toLowerCase();
    if (key !== 'read' && key !== 'write') {
      throw new StoreError(
        'INVALID',
        `X-Object-Sharing: expected read=LIST and/or write=LIST, got ${JSON.stringify(clause)}`,
      );
    }
    for (const raw of clause.slice(eq + 1).split(',')) {
      const grantee = raw.trim();
      if (grantee === '') continue;
      checkGrantee(grantee);
      (key === 'read' ? read : write).add(grantee);
    }
  }
  if (read.size + write.size > sharingEntriesMax) {
    throw new StoreError('INVALID', `X-Object-Sharing lists more than ${sharingEntriesMax}`);
  }
  // A writer may read; listing it in both keeps only the stronger grant.
  for (const w of write) read.delete(w);
  return { read: [...read].sort(), write: [...write].sort() };
}

function checkGrantee(grantee: string): void {
  if (grantee === '*') return;
  const parts = grantee.split(':');
  if (parts.length > 2) throw new StoreError('INVALID', `bad grantee ${JSON.stringify(grantee)}`);
  for (const p of parts) checkName('grantee', p);
}

export function formatSharing(sharing: Sharing): string {
  const parts: string[] = [];
  if (sharing.read.length > 0) parts.push(`read=${sharing.read.join(',')}`);
  if (sharing.write.length > 0) parts.push(`write=${sharing.write.join(',')}`);
  return parts.join(';');
}

// ---- older entry points ---------------------------------------------------------------------

/** Rights inside an account without ACLs (volumes, snapshots, users). */
export function checkAccount(caller: Principal, account: string, access: Access): void {
  const op: Operation =
    access === 'manage' ? 'account-manage' : access === 'write' ? 'object-write' : 'account-read';
  if (!isInsider(caller, account)) {
    if (caller.anonymous === true) authorize(caller, account, op);
    throw new StoreError('PERMISSION', `${caller.account} has no access to account ${account}`);
  }
  authorize(caller, account, op);
}

/** Creating users inside `account`: superusers, and that account's admins. */
export function checkUserAdmin(caller: Principal, account: string): void {
  checkAccount(caller, account, 'manage');
}

export function checkSuperuser(caller: Principal, what: string): void {
  if (caller.anonymous === true) throw new StoreError('UNAUTHENTICATED', 'a token is required');
  if (!caller.superuser) throw new StoreError('PERMISSION', `only the admin account may ${what}`);
}

/** Anything tied to the caller's own account (volumes, groups, resolving paths) needs a token. */
export function checkAuthenticated(caller: Principal): void {
  if (caller.anonymous === true) throw new StoreError('UNAUTHENTICATED', 'a token is required');
}
