// SPDX-License-Identifier: Apache-2.0
// The one place that decides who may do what. Today: an account owns everything in it, the
// superuser (the "admin" account) may act on every account. Sharing (ACLs, groups, public
// objects) extends this module.
import { StoreError } from '../core/errors.js';
import type { Principal } from './api.js';

export type Access = 'read' | 'write';

export function checkAccount(caller: Principal, account: string, _access: Access): void {
  if (caller.superuser || caller.account === account) return;
  throw new StoreError('PERMISSION', `${caller.account} has no access to account ${account}`);
}

export function checkSuperuser(caller: Principal, what: string): void {
  if (!caller.superuser) throw new StoreError('PERMISSION', `only the admin account may ${what}`);
}
